"""Open a vendor slide: OpenSlide for every format it reads, tifffile for raw tiles and OME-TIFF."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from wsi.errors import ConversionError
from wsi.sources.model import Associated, SlideInfo, SourceLevel

_ASSOCIATED = {"label": "LABEL", "macro": "OVERVIEW", "thumbnail": "THUMBNAIL"}
# Formats whose TIFF tiles abut on a plain grid, so tile i of a level is frame i. Not Ventana BIF
# or Trestle: their tiles overlap and OpenSlide places them by offsets a grid cannot express. Not
# Leica SCN: OpenSlide's levels span the whole collection, so no TIFF page is one of them (a page
# of the same size, such as the macro, is something else).
_GRID_VENDORS = {"aperio", "generic-tiff", "philips"}
# Vendors whose pixel data OpenSlide reads from JPEG (lossy) tiles or stripes.
_JPEG_VENDORS = {"hamamatsu", "mirax", "ventana", "sakura", "leica", "philips", "aperio"}


class RegionReader(Protocol):
    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray: ...
    def close(self) -> None: ...


def open_reader(kind: str, path: Path) -> RegionReader:
    if kind == "openslide":
        from wsi.sources.openslide_reader import OpenSlideRegionReader

        return OpenSlideRegionReader(path)
    from wsi.sources.tiff import TiffRegionReader

    return TiffRegionReader(path)


def nominal_downsample(w0: int, h0: int, w: int, h: int) -> float:
    """The integer factor a level was made with (its size is w0/d rounded either way), else w0/w.

    OpenSlide reports 300x250 -> 37x31 as 8.09; the level was made by halving three times, so its
    pixels are 8x the level-0 spacing (viewers such as wsidicom require integer factors).
    """
    ratio = w0 / w
    for d in range(max(1, int(ratio)), int(ratio) + 2):
        if w in (w0 // d, -(-w0 // d)) and h in (h0 // d, -(-h0 // d)):
            return float(d)
    return ratio


def open_slide(path: Path, z: int = 0, t: int = 0) -> SlideInfo:
    """Describe the slide; raise ConversionError if neither OpenSlide nor tifffile can read it.
    ``z`` and ``t`` choose the plane of a multi-channel source."""
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    import openslide

    from wsi.sources.channels import is_channel_tiff, open_channel_slide
    from wsi.sources.tiff import open_tiff

    tif = open_tiff(path)  # parsed once, for every use below
    try:
        if tif is not None and is_channel_tiff(tif):
            return open_channel_slide(path, tif, z, t)
        if tif is not None and tif.is_ome:
            # OpenSlide would read an OME-TIFF as a one-level generic TIFF without its pixel size.
            return _tiff_only(path, tif, "OME-TIFF: read with tifffile")
        try:
            slide = openslide.OpenSlide(path)
        except openslide.OpenSlideError as exc:
            return _tiff_only(path, tif, f"OpenSlide: {exc}")
        except openslide.OpenSlideUnsupportedFormatError:
            return _tiff_only(path, tif, "OpenSlide does not recognise the format")
        try:
            return _from_openslide(path, slide, tif)
        except openslide.OpenSlideError as exc:
            raise ConversionError(f"{path.name}: unreadable slide (OpenSlide: {exc})") from exc
        finally:
            slide.close()
    finally:
        if tif is not None:
            tif.close()


def _from_openslide(path: Path, slide, tif) -> SlideInfo:
    from wsi.sources import properties as p
    from wsi.sources.tiff import passthrough, rgb_levels

    props = dict(slide.properties)
    vendor = props.get("openslide.vendor", "")
    tiff_levels = {}
    if tif is not None and vendor in _GRID_VENDORS:
        for series in range(len(tif.series)):
            for level in rgb_levels(tif, series):
                tiff_levels.setdefault((level.width, level.height), level)
    ndpi = {}
    if tif is not None and tif.is_ndpi:
        from wsi.sources.ndpi import ndpi_levels

        ndpi = ndpi_levels(path)
    levels = []
    w0, h0 = slide.dimensions
    for i, (w, h) in enumerate(slide.level_dimensions):
        tw = int(props.get(f"openslide.level[{i}].tile-width", 0) or 0)
        th = int(props.get(f"openslide.level[{i}].tile-height", 0) or 0)
        match = tiff_levels.get((w, h))
        raw = passthrough(tif, match) if match is not None else None
        if raw is not None:  # the copied tiles' own size, whatever OpenSlide reports
            tw, th = match.page.tilewidth, match.page.tilelength
        elif (w, h) in ndpi:
            raw, tw = ndpi[(w, h)].passthrough, ndpi[(w, h)].tile_size
            th = tw
        levels.append(SourceLevel(i, w, h, nominal_downsample(w0, h0, w, h), tw, th, raw))
    present = list(slide.associated_images)  # names only; `in` would decode the image
    associated = [Associated(kind, name) for name, kind in _ASSOCIATED.items() if name in present]
    manufacturer, model, serial, software = p.equipment(props)
    # The TIFF tag holds the profile's exact bytes; OpenSlide's object re-serialises it.
    icc = _tiff_icc(tif.pages.first) if tif is not None and tif.pages else None
    if icc is None and slide.color_profile is not None:
        icc = slide.color_profile.tobytes()
    return SlideInfo(
        path=path,
        reader="openslide",
        vendor=vendor,
        levels=levels,
        associated=associated,
        mpp=p.mpp(props),
        objective_power=p.objective_power(props),
        icc_profile=icc,
        acquired=p.acquired(props),
        manufacturer=manufacturer,
        model=model,
        serial=serial,
        software=software,
        source_compression=_source_compression(tif, vendor),
        channels=[light] if (light := p.fluorescence(props)) else [],
    )


def _source_compression(tif, vendor: str) -> tuple[str, float | None] | None:
    """(method, ratio) when the source pixels were lossy-compressed, for LossyImageCompression."""
    if tif is not None and tif.pages:
        page = tif.pages.first
        compression = int(page.compression)
        raw = page.imagewidth * page.imagelength * page.samplesperpixel
        stored = int(sum(page.databytecounts))
        ratio = raw / stored if stored else None
        if compression in (6, 7):
            return "ISO_10918_1", ratio
        if compression in (33003, 33005, 34712):
            return None if _j2k_reversible(tif, page) else ("ISO_15444_1", ratio)
        if compression in (1, 5, 8, 32773, 32946, 50000):
            return None
    if vendor in _JPEG_VENDORS:
        return "ISO_10918_1", None
    return None


def _j2k_reversible(tif, page) -> bool:
    """Whether the level's first stored JPEG 2000 tile uses the reversible (lossless) wavelet."""
    from wsi.codestream import StreamError, j2k_codestream, read_j2k_header

    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
        if count:
            tif.filehandle.seek(offset)
            try:
                return read_j2k_header(j2k_codestream(tif.filehandle.read(count))).reversible
            except StreamError:
                return False
    return False


def _tiff_only(path: Path, tif, openslide_reason: str) -> SlideInfo:
    from wsi.sources import properties as p
    from wsi.sources.tiff import passthrough, rgb_levels

    if tif is None:
        raise ConversionError(
            f"{path.name}: not a whole-slide image this converter reads ({openslide_reason}; "
            "not a TIFF either)"
        )
    levels = rgb_levels(tif)
    if not levels:
        raise ConversionError(
            f"{path.name}: unsupported image ({openslide_reason}; the TIFF holds no 8-bit "
            "RGB image pyramid)"
        )
    try:
        _check_decodable(tif, levels[0].page)
    except Exception as exc:
        raise ConversionError(
            f"{path.name}: unsupported image ({openslide_reason}; tifffile cannot decode it: {exc})"
        ) from exc
    w0, h0 = levels[0].width, levels[0].height
    source_levels = [
        SourceLevel(
            i,
            lv.width,
            lv.height,
            nominal_downsample(w0, h0, lv.width, lv.height),
            lv.page.tilewidth if lv.page.is_tiled else 0,
            lv.page.tilelength if lv.page.is_tiled else 0,
            passthrough(tif, lv),
        )
        for i, lv in enumerate(levels)
    ]
    page = levels[0].page
    return SlideInfo(
        path=path,
        reader="tiff",
        vendor="ome-tiff" if tif.is_ome else "tiff",
        levels=source_levels,
        mpp=p.ome_mpp(tif.ome_metadata) if tif.is_ome else p.tiff_mpp(page),
        icc_profile=_tiff_icc(page),
        software=str(page.software or ""),
        source_compression=_source_compression(tif, ""),
    )


def _tiff_icc(page) -> bytes | None:
    tag = page.tags.get("InterColorProfile")
    return bytes(tag.value) if tag is not None and tag.value else None


def _check_decodable(tif, page) -> None:
    counts = page.databytecounts
    index = next((i for i, c in enumerate(counts) if c), None)
    if index is None:
        raise ValueError("no image data")
    decode = page.decode  # built lazily, and building it may move the file position
    tif.filehandle.seek(page.dataoffsets[index])
    data = tif.filehandle.read(counts[index])
    decode(data, index, jpegtables=page.jpegtables)
