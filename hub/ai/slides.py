"""A stored slide as a model sees it (``model.Slide``), read with wsidicom from the archive.

The pyramid's VOLUME instances are materialized for the length of an analysis and opened as one
slide; wsidicom decodes the tiles (TILED_FULL or sparse, any codec the archive stores). Runs in a
worker thread: nothing here may be called from the event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pydicom
import wsidicom
from pydicom import Dataset

from hub.ai.model import AnalysisError, Model, Result, Slide, UnreadableSlide, checked
from hub.archive import Archive, InstanceRef

VL_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
# A model's overview is the smallest level with at least this many pixels on its longer side
# (level 0 when the slide is smaller): enough detail for tissue outlines, small to decode.
OVERVIEW_PIXELS = 1024


def volumes(refs: list[InstanceRef]) -> list[InstanceRef]:
    """The pyramid levels among a slide series' instances (not label, overview or thumbnail)."""
    return [r for r in refs if r.sop_class_uid == VL_WSI and "VOLUME" in r.image_type.split("\\")]


@contextlib.asynccontextmanager
async def materialized(archive: Archive, refs: list[InstanceRef]) -> AsyncIterator[list[Path]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(archive.store.materialize(r.sha256)) for r in refs]


def analysed(paths: list[Path], model: Model) -> tuple[Dataset, Result]:
    """Level 0's header and what ``model`` found on the slide of these instances."""
    try:
        headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
        level0 = max(headers, key=lambda h: int(h.TotalPixelMatrixColumns))
        opened = wsidicom.WsiDicom.open(paths)
    except Exception as exc:
        raise UnreadableSlide(f"the slide cannot be opened: {exc}") from exc
    with opened as wsi:
        slide = _slide(wsi)
        try:
            result = model.analyse(slide)
        except AnalysisError:
            raise
        except Exception as exc:
            raise AnalysisError(f"the model {model.name} {model.version} failed: {exc}") from exc
        return level0, checked(result, slide)


def _slide(wsi: wsidicom.WsiDicom) -> Slide:
    levels = list(wsi.levels)  # base first
    base = levels[0]
    if base.mpp is None or not base.mpp.width:
        raise UnreadableSlide("the slide has no pixel spacing")
    big = [level for level in levels if max(level.size.width, level.size.height) >= OVERVIEW_PIXELS]
    overview = big[-1] if big else base
    return Slide(
        overview=_reader(wsi, overview.level)(0, 0, overview.size.width, overview.size.height),
        size=(base.size.width, base.size.height),
        spacing_mm=base.mpp.width / 1000,
        read=_reader(wsi, base.level),
    )


def _reader(wsi: wsidicom.WsiDicom, level: int) -> Callable[[int, int, int, int], np.ndarray]:
    """Regions of one level (wsidicom numbers levels by their scale: 2**level)."""

    def read(x: int, y: int, width: int, height: int) -> np.ndarray:
        try:
            region = wsi.read_region((x, y), level, (width, height), as_array=True)
        except Exception as exc:
            raise UnreadableSlide(f"the slide's pixels cannot be read: {exc}") from exc
        return np.ascontiguousarray(region[..., :3])

    return read
