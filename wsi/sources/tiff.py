"""Tiled TIFF family (SVS, Philips TIFF, generic tiled TIFF, OME-TIFF) through tifffile.

Two jobs: find source levels whose compressed tiles can be copied as DICOM frames, and decode
regions of TIFF pyramids that OpenSlide does not read (OME-TIFF, TIFFs with odd layouts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from wsi.codestream import (
    StreamError,
    j2k_codestream,
    jpeg_frame_prefix,
    jpeg_is_rgb,
    read_j2k_header,
    read_jpeg_header,
)
from wsi.sources.model import Passthrough
from wsi.sources.raster import paste

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG2000 = "1.2.840.10008.1.2.4.91"

_JPEG = 7
_APERIO_J2K_YCBCR = 33003
_JPEG2000 = {_APERIO_J2K_YCBCR, 33005, 34712}  # Aperio YCbCr, Aperio RGB, JPEG 2000
_PHOTOMETRIC_RGB = 2


@dataclass(frozen=True)
class TiffLevel:
    page: tifffile.TiffPage
    width: int
    height: int


def open_tiff(path: Path) -> tifffile.TiffFile | None:
    try:
        return tifffile.TiffFile(path)
    except Exception:  # tifffile raises many types for non-TIFF input; any means "not ours"
        return None


def rgb_levels(tif: tifffile.TiffFile, series_index: int = 0) -> list[TiffLevel]:
    """Levels of an image series if it is a plain 8-bit RGB pyramid, else []."""
    if len(tif.series) <= series_index or tif.is_ndpi:
        return []
    series = tif.series[series_index]
    levels = []
    for level in series.levels:
        page = level.keyframe
        if len(level.pages) != 1 or page.dtype != np.uint8 or page.samplesperpixel != 3:
            return []
        levels.append(TiffLevel(page, page.imagewidth, page.imagelength))
    return levels


def passthrough(tif: tifffile.TiffFile, level: TiffLevel) -> Passthrough | None:
    """Describe the level's tiles for raw copying, or None if they must be re-encoded."""
    page = level.page
    if not page.is_tiled or page.planarconfig != 1 or page.bitspersample != 8:
        return None
    offsets = np.asarray(page.dataoffsets, dtype=np.int64)
    counts = np.asarray(page.databytecounts, dtype=np.int64)
    sample = _first_tile(tif, offsets, counts)
    if sample is None:
        return None
    try:
        if page.compression == _JPEG:
            return _jpeg(page, sample, offsets, counts)
        if page.compression in _JPEG2000:
            return _jpeg2000(page, sample, offsets, counts)
    except StreamError:
        return None
    return None


def _first_tile(tif: tifffile.TiffFile, offsets: np.ndarray, counts: np.ndarray) -> bytes | None:
    nonzero = np.flatnonzero(counts)
    if not len(nonzero):
        return None
    i = int(nonzero[0])
    tif.filehandle.seek(int(offsets[i]))
    return tif.filehandle.read(int(counts[i]))


def _jpeg(page, sample: bytes, offsets, counts) -> Passthrough | None:
    header = read_jpeg_header(sample)
    if header.sof_marker not in (0xC0, 0xC1) or len(header.component_ids) != 3:
        return None  # progressive / lossless / 12-bit tiles: re-encode
    rgb = jpeg_is_rgb(header, page.photometric == _PHOTOMETRIC_RGB)
    return Passthrough(
        codec="jpeg",
        photometric="RGB" if rgb else "YBR_FULL_422",
        transfer_syntax=JPEG_BASELINE if header.sof_marker == 0xC0 else JPEG_EXTENDED,
        lossy=True,
        method="ISO_10918_1",
        prefix=jpeg_frame_prefix(page.jpegtables, header, rgb),
        strip=2,
        offsets=offsets,
        bytecounts=counts,
    )


def _jpeg2000(page, sample: bytes, offsets, counts) -> Passthrough | None:
    if j2k_codestream(sample) is not sample:
        return None  # JP2-wrapped tiles: copying would need unwrapping each; re-encode instead
    header = read_j2k_header(sample)
    if header.components != 3 or page.compression == _APERIO_J2K_YCBCR:
        # Aperio's 33003 tiles hold YCbCr whatever the TIFF photometric tag says (it says RGB),
        # and no DICOM label means "YCbCr in a JPEG 2000 codestream": decode and re-encode.
        return None
    if header.mct:
        photometric = "YBR_RCT" if header.reversible else "YBR_ICT"
    elif page.compression == 33005 or page.photometric == _PHOTOMETRIC_RGB:
        photometric = "RGB"
    else:
        return None
    return Passthrough(
        codec="jpeg2000",
        photometric=photometric,
        transfer_syntax=JPEG2000,
        lossy=not header.reversible,
        method="ISO_15444_1",
        prefix=b"",
        strip=0,
        offsets=offsets,
        bytecounts=counts,
    )


class TiffRegionReader:
    """Decode regions of a tiled or stripped TIFF pyramid level by level, tile by tile."""

    def __init__(self, path: Path) -> None:
        self._tif = tifffile.TiffFile(path)
        self._levels = rgb_levels(self._tif)

    def close(self) -> None:
        self._tif.close()

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        page = self._levels[level].page
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        th = page.tilelength if page.is_tiled else page.rowsperstrip
        tw = page.tilewidth if page.is_tiled else page.imagewidth
        th = min(th, page.imagelength)
        across = -(-page.imagewidth // tw)
        fh = self._tif.filehandle
        for ty in range(max(y, 0) // th, min(y + h, page.imagelength - 1) // th + 1):
            for tx in range(max(x, 0) // tw, min(x + w, page.imagewidth - 1) // tw + 1):
                index = ty * across + tx
                count = page.databytecounts[index]
                if not count:
                    continue
                decode = page.decode  # built lazily, and building it may move the file position
                fh.seek(page.dataoffsets[index])
                data = fh.read(count)
                tile, _, _ = decode(data, index, jpegtables=page.jpegtables)
                tile = tile.reshape(tile.shape[-3:])
                paste(out, tile[..., :3], tx * tw - x, ty * th - y)
        return out
