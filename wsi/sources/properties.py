"""Vendor properties (OpenSlide's key/value view, TIFF tags) -> scanner facts the DICOM needs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from wsi.sources.model import Channel

# Writers that know no resolution put the TIFF default 72 dpi in: that is no pixel spacing.
_PLACEHOLDER_DPI = 72.0

_MANUFACTURERS = {
    "aperio": "Aperio",
    "hamamatsu": "Hamamatsu",
    "philips": "Philips",
    "leica": "Leica",
    "mirax": "3DHISTECH",
    "ventana": "Roche Ventana",
    "sakura": "Sakura",
    "zeiss": "Zeiss",
    "synthetic": "OpenSlide",
}


def first(props: Mapping[str, str], *keys: str) -> str:
    for key in keys:
        value = props.get(key, "").strip()
        if value:
            return value
    return ""


def mpp(props: Mapping[str, str]) -> tuple[float, float] | None:
    """Micrometres per pixel at level 0, or None when the slide does not record it.

    OpenSlide already converts vendor units (Philips stores DICOM_PIXEL_SPACING in millimetres,
    the classic 1000x trap); a generic TIFF's 72 dpi default is treated as "not recorded".
    """
    try:
        x = float(props.get("openslide.mpp-x", "nan"))
        y = float(props.get("openslide.mpp-y", "nan"))
    except ValueError:
        return None
    if not (x > 0 and y > 0):
        return None
    if props.get("openslide.vendor") == "generic-tiff" and _is_placeholder_resolution(props):
        return None
    return x, y


def _is_placeholder_resolution(props: Mapping[str, str]) -> bool:
    unit = props.get("tiff.ResolutionUnit", "")
    try:
        res = float(props.get("tiff.XResolution", "0"))
    except ValueError:
        return True
    dpi = res * 2.54 if unit == "centimeter" else res
    return abs(dpi - _PLACEHOLDER_DPI) < 0.05


def tiff_mpp(page) -> tuple[float, float] | None:
    """Micrometres per pixel from a tifffile page's resolution tags (None for none / 72 dpi)."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
    per_unit_um = {2: 25400.0, 3: 10000.0}.get(int(unit))
    if per_unit_um is None:
        return None
    xn, xd = tags["XResolution"].value
    yn, yd = tags["YResolution"].value
    if not (xn and xd and yn and yd):
        return None
    xres, yres = xn / xd, yn / yd
    dpi = xres * 25400.0 / per_unit_um
    if abs(dpi - _PLACEHOLDER_DPI) < 0.05:
        return None
    return per_unit_um / xres, per_unit_um / yres


_UM_PER_UNIT = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def ome_mpp(ome_xml: str | None) -> tuple[float, float] | None:
    """PhysicalSizeX/Y of the first OME Pixels element, in micrometres."""
    if not ome_xml:
        return None
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for axis in ("X", "Y"):
        try:
            value = float(pixels.get(f"PhysicalSize{axis}", "nan"))
        except ValueError:
            return None
        scale = _UM_PER_UNIT.get(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if not (value > 0) or scale is None:
            return None
        sizes.append(value * scale)
    return sizes[0], sizes[1]


def fluorescence(props: Mapping[str, str]) -> Channel | None:
    """The filter of a fluorescence scan the vendor records (Hamamatsu NDPI: its shading data
    names the cube, with excitation and emission wavelengths), else None (brightfield)."""
    for key, value in props.items():
        if not key.startswith("hamamatsu.") or "ExcitationWaveLength=" not in value:
            continue
        fields = {}
        for part in f"{key};{value}".replace("\r", "").split(";"):
            name, _, text = part.partition("=")
            fields[name.strip()] = text.strip()
        return Channel(
            name=fields.get("Name") or "Fluorescence",
            excitation_nm=_positive(fields.get("ExcitationWaveLength")),
            emission_nm=_positive(fields.get("EmissionWaveLength")),
        )
    return None


def _positive(text: str | None) -> float | None:
    try:
        value = float(text) if text else 0.0
    except ValueError:
        return None
    return value if value > 0 else None


def objective_power(props: Mapping[str, str]) -> float | None:
    try:
        value = float(props.get("openslide.objective-power", "nan"))
    except ValueError:
        return None
    return value if value > 0 else None


def acquired(props: Mapping[str, str]) -> datetime | None:
    """Scan date/time as recorded by the scanner, in whichever vendor spelling is present."""
    aperio = first(props, "aperio.Date")
    if aperio:
        stamp = f"{aperio} {first(props, 'aperio.Time') or '00:00:00'}"
        for fmt in ("%m/%d/%y %H:%M:%S", "%m/%d/%Y %H:%M:%S"):
            parsed = _parse(stamp, fmt)
            if parsed:
                return parsed
    philips = first(props, "philips.DICOM_ACQUISITION_DATETIME")
    if philips:
        parsed = _parse(philips[:14], "%Y%m%d%H%M%S")
        if parsed:
            return parsed
    for key, fmt in (
        ("leica.creation-date", "%Y-%m-%dT%H:%M:%S"),
        ("mirax.GENERAL.SLIDE_CREATIONDATETIME", "%d/%m/%Y %H:%M:%S"),
        ("tiff.DateTime", "%Y:%m:%d %H:%M:%S"),
    ):
        value = first(props, key)
        parsed = _parse(value[:19], fmt) if value else None
        if parsed:
            return parsed
    return None


def _parse(value: str, fmt: str) -> datetime | None:
    try:
        return datetime.strptime(value, fmt)
    except ValueError:
        return None


def equipment(props: Mapping[str, str]) -> tuple[str, str, str, str]:
    """(manufacturer, model, device serial number, software versions), '' where not recorded."""
    vendor = props.get("openslide.vendor", "")
    manufacturer = first(props, "philips.DICOM_MANUFACTURER", "tiff.Make") or _MANUFACTURERS.get(
        vendor, ""
    )
    model = first(
        props,
        "philips.DICOM_MANUFACTURERS_MODEL_NAME",
        "leica.device-model",
        "hamamatsu.Product",
        "tiff.Model",
    )
    serial = first(
        props,
        "philips.DICOM_DEVICE_SERIAL_NUMBER",
        "aperio.ScanScope ID",
        "hamamatsu.NDP.S/N",
        "leica.device-version",
    )
    software = first(props, "philips.DICOM_SOFTWARE_VERSIONS", "tiff.Software")
    if not software and vendor == "aperio":
        software = props.get("openslide.comment", "").split("\n", 1)[0].split(";")[0].strip()
    return manufacturer, model, serial, software
