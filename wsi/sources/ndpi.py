"""Hamamatsu NDPI levels re-tiled losslessly, through opentile (and libjpeg-turbo's transform).

An NDPI level is one JPEG whose restart intervals are stripes of a few pixel rows. opentile joins
the stripes a tile row needs into one frame and cuts the tiles out of it in the DCT domain
(tjTransform with a crop on MCU boundaries): nothing is decoded, so every tile decodes to exactly
the pixels OpenSlide reads from the stripes. An edge tile reaching past the level is filled in
the DCT domain too (white). OpenSlide's further levels below the last stored one come from
libjpeg's scaled decoding: those have no stripes and are decoded and re-encoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsi.codestream import StreamError, jpeg_is_rgb, read_jpeg_header
from wsi.sources.model import Passthrough

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
# opentile makes the tile size a multiple or divisor of the narrowest stripe; asking for this
# gives tiles near it (496 for stripes 496 wide).
REQUESTED_TILE = 512


@dataclass(frozen=True)
class NdpiLevel:
    """One stored NDPI level as opentile re-tiles it."""

    index: int  # opentile's level index
    width: int
    height: int
    tile_size: int
    passthrough: Passthrough


def ndpi_levels(path: Path) -> dict[tuple[int, int], NdpiLevel]:
    """The stored levels whose stripes opentile can re-tile, by (width, height); {} if none."""
    try:
        from opentile import OpenTile
    except ImportError:  # libturbojpeg missing: the levels are re-encoded instead
        return {}
    try:
        tiler = OpenTile.open(path, REQUESTED_TILE)
    except Exception:  # noqa: BLE001 - opentile refuses odd NDPIs; OpenSlide still reads them
        return {}
    out = {}
    try:
        for index, level in enumerate(tiler.levels):
            raw = _passthrough(level)
            if raw is None:
                continue
            size = level.image_size
            out[(size.width, size.height)] = NdpiLevel(
                index, size.width, size.height, level.tile_size.width, raw
            )
    finally:
        tiler.close()
    return out


def _passthrough(level) -> Passthrough | None:
    if level.tile_size.width != level.tile_size.height:
        return None
    try:
        header = read_jpeg_header(level.get_tile((0, 0)))
    except (StreamError, ValueError):
        return None
    if header.sof_marker != 0xC0 or len(header.component_ids) != 3:
        return None
    rgb = jpeg_is_rgb(header, tiff_photometric_rgb=False)
    page = level._page  # no public accessor; only for the stripes' byte counts (a size estimate)
    return Passthrough(
        codec="jpeg",
        photometric="RGB" if rgb else "YBR_FULL_422",
        transfer_syntax=JPEG_BASELINE,
        lossy=True,
        method="ISO_10918_1",
        prefix=b"",
        strip=0,
        offsets=np.asarray(page.dataoffsets, dtype=np.int64),
        bytecounts=np.asarray(page.databytecounts, dtype=np.int64),
        retiled=True,
    )


class NdpiRetiler:
    """Re-tiled frames of one conversion's NDPI levels, a tile row at a time."""

    def __init__(self, path: Path) -> None:
        from opentile import OpenTile

        self._tiler = OpenTile.open(path, REQUESTED_TILE)
        self._by_size = {
            (lv.image_size.width, lv.image_size.height): lv for lv in self._tiler.levels
        }

    def close(self) -> None:
        self._tiler.close()

    def rows(self, width: int, height: int) -> Iterator[list[bytes]]:
        """The level's tiles as complete JPEG streams, row by row (TILED_FULL order)."""
        level = self._by_size[(width, height)]
        across, down = level.tiled_size.width, level.tiled_size.height
        for y in range(down):
            yield list(level.get_tiles([(x, y) for x in range(across)]))
