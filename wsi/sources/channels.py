"""Multi-channel TIFF pyramids (fluorescence, multiplex) through tifffile: OME-TIFF with C, Z and T
axes, PerkinElmer/Akoya QPTIFF, and 8- or 16-bit greyscale tiled TIFF with a channel per page.

Each channel becomes one optical path of the output. The channel names, colours and wavelengths
come from the OME-XML or from the QPTIFF's per-page XML.
"""

from __future__ import annotations

import math
import os
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from wsi.errors import ConversionError
from wsi.sources.model import Associated, Channel, ChannelPlanes, SlideInfo, SourceLevel
from wsi.sources.raster import paste

_MINISBLACK = 1
_RGB = 2
_UNSIGNED = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}
_SIGNED = {np.dtype(np.int8): 8, np.dtype(np.int16): 16}
_NM_PER_UNIT = {"nm": 1.0, "µm": 1e3, "um": 1e3, "pm": 1e-3, "Å": 0.1, "m": 1e9}


def is_channel_tiff(tif: tifffile.TiffFile) -> bool:
    """Whether the TIFF's main image is greyscale planes (one or more channels), not RGB."""
    if is_qptiff(tif):
        return _qpi_is_fluorescence(tif)
    if tif.is_ndpi or tif.is_svs or not tif.series:
        return False  # vendor formats OpenSlide reads (their fluorescence scans are RGB)
    # Min-is-white greyscale and palette images stay with the RGB path, which renders them.
    return tif.series[0].keyframe.photometric == _MINISBLACK


@dataclass(frozen=True)
class _Layout:
    """Where the planes are: pages[level][channel], and the sample of a multi-sample page."""

    pages: list[list[tifffile.TiffPage]]
    samples: list[int] | None
    channels: list[Channel]
    z_planes: int
    t_points: int


def open_channel_slide(path: Path, tif: tifffile.TiffFile, z: int, t: int) -> SlideInfo:
    """Describe a multi-channel TIFF; ConversionError says why one cannot be converted."""
    layout = locate(tif, z, t)
    page = layout.pages[0][0]
    dtype = np.dtype(page.dtype)
    notes = []
    if dtype in _UNSIGNED:
        bits, shift = _UNSIGNED[dtype], 0
    elif dtype in _SIGNED:
        bits, shift = _SIGNED[dtype], 1 << (_SIGNED[dtype] - 1)
        notes.append(
            f"Signed {dtype} source samples shifted by +{shift} into the unsigned range "
            "DICOM whole-slide images hold"
        )
    else:
        raise ConversionError(
            f"{path.name}: unsupported sample format {dtype} ({page.bitspersample}-bit "
            f"{_kind(dtype)}); this converter takes 8- or 16-bit integer channels"
        )
    if layout.z_planes > 1 or layout.t_points > 1:
        notes.append(
            f"Z plane {z + 1} of {layout.z_planes} and time point {t + 1} of {layout.t_points} "
            "of the source"
        )
    levels = []
    w0, h0 = page.imagewidth, page.imagelength
    from wsi.sources import nominal_downsample

    for i, pages in enumerate(layout.pages):
        first = pages[0]
        tiled = first.is_tiled
        levels.append(
            SourceLevel(
                i,
                first.imagewidth,
                first.imagelength,
                nominal_downsample(w0, h0, first.imagewidth, first.imagelength),
                first.tilewidth if tiled else 0,
                first.tilelength if tiled else 0,
            )
        )
    from wsi.sources import properties as p

    mpp = p.ome_mpp(tif.ome_metadata) if tif.is_ome else p.tiff_mpp(page)
    return SlideInfo(
        path=path,
        reader="channels",
        vendor="qptiff" if is_qptiff(tif) else "ome-tiff" if tif.is_ome else "tiff",
        levels=levels,
        mpp=mpp,
        objective_power=_qpi_objective(page) if is_qptiff(tif) else None,
        software=str(page.software or ""),
        channels=layout.channels,
        planes=ChannelPlanes(z=z, t=t, dtype=str(dtype), bits=bits, shift=shift),
        notes=notes,
        associated=_qpi_photos(tif) if is_qptiff(tif) else [],
    )


def read_photo(path: Path, name: str) -> np.ndarray:
    """The RGB pixels of a photograph of the glass (an ``Associated`` of ``_qpi_photos``)."""
    with tifffile.TiffFile(path) as tif:
        pixels = tif.pages[int(name)].asarray()
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or pixels.dtype != np.uint8:
        raise ConversionError(f"{path.name}: page {name} is not an 8-bit RGB photograph")
    return np.ascontiguousarray(pixels[:, :, :3])


def _kind(dtype: np.dtype) -> str:
    return {"f": "floating point", "c": "complex", "b": "boolean"}.get(dtype.kind, "integer")


def locate(tif: tifffile.TiffFile, z: int, t: int) -> _Layout:
    """The pages of each channel at each level, for Z plane ``z`` and time point ``t``."""
    layout = _qpi_layout(tif) if is_qptiff(tif) else _series_layout(tif, z, t)
    _check_sizes(tif, layout)
    return layout


def _series_layout(tif: tifffile.TiffFile, z: int, t: int) -> _Layout:
    series = tif.series[0]
    axes, shape = series.axes, series.shape
    name = Path(tif.filehandle.path).name
    yx = axes.index("Y")
    if "S" in axes:  # samples within each page (contiguous or planar): they are the channels
        samples = list(range(shape[axes.index("S")]))
        axes, shape = (
            axes.replace("S", ""),
            tuple(n for a, n in zip(axes, shape, strict=True) if a != "S"),
        )
        yx = axes.index("Y")
        if any(a not in "ZT" for a in axes[:yx]):
            raise ConversionError(f"{name}: unsupported layout of the image axes ({axes})")
        plane_axes, channel_axis = axes[:yx], None
    else:
        plane_axes = axes[:yx]
        channel_axis = next((a for a in "CIQ" if a in plane_axes), None)
        samples = None
    sizes = dict(zip(plane_axes, shape[:yx], strict=True))
    z_planes, t_points = sizes.get("Z", 1), sizes.get("T", 1)
    if not 0 <= z < z_planes:
        raise ConversionError(
            f"{name}: no Z plane {z}; the slide has {z_planes} (0-{z_planes - 1})"
        )
    if not 0 <= t < t_points:
        raise ConversionError(
            f"{name}: no time point {t}; the slide has {t_points} (0-{t_points - 1})"
        )
    count = sizes[channel_axis] if channel_axis else len(samples or [0])
    pages = []
    for level in series.levels:
        per_channel = []
        for c in range(count if channel_axis else 1):
            index = [{"Z": z, "T": t}.get(a, 0) for a in plane_axes]
            if channel_axis:
                index[plane_axes.index(channel_axis)] = c
            flat = int(np.ravel_multi_index(index, shape[:yx])) if plane_axes else 0
            page = level.pages[flat]
            if page is None:
                raise ConversionError(f"{name}: channel {c} of the image has no TIFF page")
            per_channel.append(page if isinstance(page, tifffile.TiffPage) else page.aspage())
        pages.append(per_channel if channel_axis else per_channel * count)
    channels = _ome_channels(tif.ome_metadata, count) if tif.is_ome else []
    channels = channels or [Channel(f"Channel {c + 1}") for c in range(count)]
    return _Layout(pages, samples, channels, z_planes, t_points)


def _check_sizes(tif: tifffile.TiffFile, layout: _Layout) -> None:
    name = Path(tif.filehandle.path).name
    for level, pages in enumerate(layout.pages):
        sizes = [(p.imagewidth, p.imagelength) for p in pages]
        for channel, page in zip(layout.channels, pages, strict=True):
            if (page.imagewidth, page.imagelength) != sizes[0]:
                raise ConversionError(
                    f"{name}: mismatched channel sizes: channel {channel.name!r} is "
                    f"{page.imagewidth}x{page.imagelength} at level {level}, channel "
                    f"{layout.channels[0].name!r} {sizes[0][0]}x{sizes[0][1]}"
                )
            if page.dtype != pages[0].dtype:
                raise ConversionError(
                    f"{name}: mismatched channel sample formats: {channel.name!r} is "
                    f"{page.dtype}, {layout.channels[0].name!r} {pages[0].dtype}"
                )


def _ome_channels(ome_xml: str | None, count: int) -> list[Channel]:
    """Channel names, colours and wavelengths of the first OME Image, or [] if they do not
    match the image's channel count."""
    try:
        root = ET.fromstring(ome_xml or "")
    except ET.ParseError:
        return []
    pixels = next((el for el in root.iter() if _local(el.tag) == "Pixels"), None)
    if pixels is None:
        return []
    found = [el for el in pixels if _local(el.tag) == "Channel"]
    if len(found) != count:
        return []
    channels = []
    for i, el in enumerate(found):
        channels.append(
            Channel(
                name=el.get("Name") or el.get("Fluor") or f"Channel {i + 1}",
                excitation_nm=_nm(
                    el.get("ExcitationWavelength"), el.get("ExcitationWavelengthUnit")
                ),
                emission_nm=_nm(el.get("EmissionWavelength"), el.get("EmissionWavelengthUnit")),
                color=_ome_color(el.get("Color")),
            )
        )
    return channels


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _nm(value: str | None, unit: str | None) -> float | None:
    try:
        number = float(value) if value else math.nan
    except ValueError:
        return None
    scale = _NM_PER_UNIT.get(unit or "nm")
    return number * scale if number > 0 and scale else None


def _ome_color(value: str | None) -> tuple[int, int, int] | None:
    """OME's Color: a signed 32-bit RGBA integer."""
    try:
        rgba = int(value) & 0xFFFFFFFF if value else None
    except ValueError:
        return None
    if rgba is None:
        return None
    return (rgba >> 24) & 255, (rgba >> 16) & 255, (rgba >> 8) & 255


# -- QPTIFF -----------------------------------------------------------------------------------
# PerkinElmer/Akoya layout: IFDs 0..n-1 hold the full-resolution planes (one per channel of a
# fluorescence scan, one RGB page for brightfield), then an RGB thumbnail, then n pages for each
# reduced resolution (halving), then optional overview and label. Each page's ImageDescription
# is a <PerkinElmer-QPI-ImageDescription> XML naming its ImageType, and for a channel its Name,
# Color ("r,g,b") and, in newer files, its filters' wavelengths. Resolution tags are pixels/cm.


def is_qptiff(tif: tifffile.TiffFile) -> bool:
    """tifffile knows QPTIFF by its Software tag; some writers put another name there, so the
    first page's description XML says it too."""
    description = (tif.pages.first.description or "")[:200] if tif.pages else ""
    return tif.is_qpi or "<PerkinElmer-QPI-ImageDescription>" in description


def _qpi_xml(page: tifffile.TiffPage) -> ET.Element | None:
    text = (page.description or "").strip().replace("utf-16", "utf-8")
    try:
        return ET.fromstring(text.encode())
    except ET.ParseError:
        return None


def _qpi_text(root: ET.Element | None, tag: str) -> str:
    found = root.find(tag) if root is not None else None
    return (found.text or "").strip() if found is not None else ""


def _qpi_is_fluorescence(tif: tifffile.TiffFile) -> bool:
    page = tif.pages.first
    return page.photometric == _MINISBLACK


def _qpi_layout(tif: tifffile.TiffFile) -> _Layout:
    name = Path(tif.filehandle.path).name
    pages = list(tif.pages)
    full = []
    for page in pages:
        if _qpi_text(_qpi_xml(page), "ImageType") != "FullResolution":
            break
        full.append(page)
    if not full:
        raise ConversionError(f"{name}: a QPTIFF without full-resolution channel pages")
    channels = [_qpi_channel(_qpi_xml(p), i) for i, p in enumerate(full)]
    levels = [full]
    reduced = [p for p in pages if _qpi_text(_qpi_xml(p), "ImageType") == "ReducedResolution"]
    for start in range(0, len(reduced) - len(full) + 1, len(full)):
        group = reduced[start : start + len(full)]
        previous = levels[-1][0]
        if group[0].imagewidth >= previous.imagewidth:
            break
        levels.append(group)
    return _Layout(levels, None, channels, 1, 1)


def _qpi_photos(tif: tifffile.TiffFile) -> list[Associated]:
    """The overview and label, photographs of the glass in white light, named by page index.
    The thumbnail is left out: it is a rendering of the channels, which the pyramid holds."""
    kinds = {"Overview": "OVERVIEW", "Label": "LABEL"}
    photos = {}
    for page in tif.pages:
        kind = kinds.get(_qpi_text(_qpi_xml(page), "ImageType"))
        if kind and kind not in photos and page.photometric == _RGB:
            photos[kind] = Associated(kind, str(page.index))
    return list(photos.values())


def _qpi_channel(root: ET.Element | None, index: int) -> Channel:
    color = None
    parts = _qpi_text(root, "Color").split(",")
    if len(parts) == 3 and all(p.strip().isdigit() for p in parts):
        color = tuple(min(255, int(p)) for p in parts)
    return Channel(
        name=_qpi_text(root, "Name") or _qpi_text(root, "Biomarker") or f"Channel {index + 1}",
        excitation_nm=_qpi_band(root, "ExcitationFilter"),
        emission_nm=_qpi_band(root, "EmissionFilter"),
        color=color,  # type: ignore[arg-type]
    )


def _qpi_band(root: ET.Element | None, tag: str) -> float | None:
    """The centre of a filter's first pass band (<Bands><Band><Cuton/><Cutoff/>), in nm."""
    band = root.find(f"{tag}/Bands/Band") if root is not None else None
    if band is None:
        return None
    try:
        cut_on, cut_off = float(_qpi_text(band, "Cuton")), float(_qpi_text(band, "Cutoff"))
    except ValueError:
        return None
    return (cut_on + cut_off) / 2 if 0 < cut_on <= cut_off else None


def _qpi_objective(page: tifffile.TiffPage) -> float | None:
    text = _qpi_text(_qpi_xml(page), "Objective").lower().rstrip("x").strip()
    try:
        power = float(text)
    except ValueError:
        return None
    return power if power > 0 else None


# -- reading ----------------------------------------------------------------------------------


class ChannelRegionReader:
    """Decode regions of one channel of one level, zero beyond the edge; safe across threads
    (tiles are read with pread and decoded without touching tifffile's file position)."""

    def __init__(self, slide: SlideInfo) -> None:
        assert slide.planes is not None
        self._tif = tifffile.TiffFile(slide.path)
        self._layout = locate(self._tif, slide.planes.z, slide.planes.t)
        self._shift = slide.planes.shift
        self._dtype = np.uint8 if slide.planes.bits == 8 else np.uint16
        self._fd = os.open(slide.path, os.O_RDONLY)
        self._decoders = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        os.close(self._fd)
        self._tif.close()

    def _decoder(self, page: tifffile.TiffPage):
        with self._lock:  # tifffile builds it lazily, moving the file position
            key = id(page)
            if key not in self._decoders:
                self._decoders[key] = page.decode
            return self._decoders[key]

    def read(self, level: int, channel: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        page = self._layout.pages[level][channel]
        sample = self._layout.samples[channel] if self._layout.samples else None
        out = np.zeros((h, w), dtype=self._dtype)
        decode = self._decoder(page)
        tw = page.tilewidth if page.is_tiled else page.imagewidth
        th = min(page.tilelength if page.is_tiled else page.rowsperstrip, page.imagelength)
        across, down = -(-page.imagewidth // tw), -(-page.imagelength // th)
        planar = page.planarconfig == 2 and sample is not None
        for ty in range(max(y, 0) // th, (min(y + h, page.imagelength) - 1) // th + 1):
            for tx in range(max(x, 0) // tw, (min(x + w, page.imagewidth) - 1) // tw + 1):
                index = ty * across + tx + (sample * across * down if planar else 0)
                tile = self._tile(page, decode, index)
                if tile is None:
                    continue
                tile = tile[..., 0 if planar or sample is None else sample]
                paste(out, self._unsigned(tile), tx * tw - x, ty * th - y)
        return out

    def _tile(self, page: tifffile.TiffPage, decode, index: int) -> np.ndarray | None:
        count = page.databytecounts[index]
        if not count:
            return None
        data = os.pread(self._fd, count, page.dataoffsets[index])
        if len(data) != count:
            raise ValueError(f"tile {index} is cut short ({len(data)} of {count} bytes)")
        tile, _, _ = decode(data, index, jpegtables=page.jpegtables)
        if tile is None:
            raise ValueError(f"tile {index} does not decode")
        return tile.reshape(tile.shape[-3:])

    def _unsigned(self, tile: np.ndarray) -> np.ndarray:
        if not self._shift:
            return tile
        return (tile.astype(np.int32) + self._shift).astype(self._dtype)
