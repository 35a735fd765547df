"""Level plan: reuse the source's levels, generate missing smaller ones down to thumbnail size."""

from __future__ import annotations

import math
from dataclasses import dataclass

from wsi.options import ConvertOptions
from wsi.sources.model import Passthrough, SlideInfo, SourceLevel

DEFAULT_TILE = 256
# A THUMBNAIL at most this fraction of the smallest level's size. Viewers that stack every image
# of a slide into one pyramid (dicom-microscopy-viewer) refuse two resolutions that are nearly
# equal, so the thumbnail must be clearly below the pyramid, not beside its last level.
THUMBNAIL_FRACTION = 0.5
MIN_THUMBNAIL = 64  # below this on its longer side a thumbnail is left out


@dataclass(frozen=True)
class PlannedLevel:
    width: int
    height: int
    tile_width: int
    tile_height: int
    downsample: float  # level-0 width / this width
    read_level: int  # source level decoded for re-encoding (the passthrough level itself)
    passthrough: Passthrough | None  # copy these tiles as frames
    generated: bool  # not a level of the source: DERIVED / RESAMPLED

    @property
    def tiles_across(self) -> int:
        return math.ceil(self.width / self.tile_width)

    @property
    def tiles_down(self) -> int:
        return math.ceil(self.height / self.tile_height)

    @property
    def frames(self) -> int:
        return self.tiles_across * self.tiles_down


def plan(slide: SlideInfo, options: ConvertOptions) -> list[PlannedLevel]:
    levels = _distinct(slide.levels)
    # Re-tiled levels (NDPI) have the tile size the stripes allow; levels encoded beside them
    # take the same one, as viewers (wsidicom) want one tile size across a pyramid.
    retiled = [lv.tile_width for lv in levels if lv.passthrough and lv.passthrough.retiled]
    out = [_reuse(level, options, retiled[0] if retiled else DEFAULT_TILE) for level in levels]
    tile = out[-1].tile_width if options.tile_size is None else options.tile_size
    while max(out[-1].width, out[-1].height) > options.min_level_size:
        last = out[-1]
        ds = last.downsample * options.level_factor
        usable = [lv for lv in levels if lv.downsample <= ds * 1.001]
        source = max(usable, key=lambda lv: lv.downsample)
        out.append(
            PlannedLevel(
                width=math.ceil(last.width / options.level_factor),
                height=math.ceil(last.height / options.level_factor),
                tile_width=tile,
                tile_height=tile,
                downsample=ds,
                read_level=source.index,
                passthrough=None,
                generated=True,
            )
        )
    return out


def thumbnail_box(levels: list[PlannedLevel]) -> tuple[int, int] | None:
    """The largest (width, height) a THUMBNAIL of this pyramid may have; None: leave it out."""
    smallest = levels[-1]
    box = (
        math.floor(smallest.width * THUMBNAIL_FRACTION),
        math.floor(smallest.height * THUMBNAIL_FRACTION),
    )
    return box if max(box) >= MIN_THUMBNAIL and min(box) >= 1 else None


def fit(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """width x height scaled down (never up) to fit in box, keeping the aspect ratio."""
    scale = min(1.0, box[0] / width, box[1] / height)
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def _distinct(levels: list[SourceLevel]) -> list[SourceLevel]:
    """Source levels, largest first, without repeats of the same size."""
    seen: set[tuple[int, int]] = set()
    out = []
    for level in sorted(levels, key=lambda lv: -lv.width * lv.height):
        if (level.width, level.height) not in seen and level.width and level.height:
            seen.add((level.width, level.height))
            out.append(level)
    return out


def _reuse(level: SourceLevel, options: ConvertOptions, default_tile: int) -> PlannedLevel:
    same_grid = (
        level.passthrough is not None
        and level.tile_width > 0
        and level.tile_width == level.tile_height
        and options.tile_size in (None, level.tile_width)
    )
    raw = level.passthrough if same_grid and options.codec == "passthrough-or-jpeg" else None
    if same_grid:
        tw, th = level.tile_width, level.tile_height
    else:
        tw = th = options.tile_size or _native_square(level) or default_tile
    return PlannedLevel(
        width=level.width,
        height=level.height,
        tile_width=tw,
        tile_height=th,
        downsample=level.downsample,
        read_level=level.index,
        passthrough=raw,
        generated=False,
    )


def _native_square(level: SourceLevel) -> int | None:
    """The source's tile size when it is a sensible square tile (NDPI stripes are not)."""
    if level.tile_width == level.tile_height and 128 <= level.tile_width <= 1024:
        return level.tile_width
    return None
