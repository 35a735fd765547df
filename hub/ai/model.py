"""What an analysis model is, what it sees of a slide and what it answers.

A model is anything with a name, a version, a family (a coded concept: what kind of algorithm it
is), its parameters and ``analyse(slide) -> Result``. Built-in models are in ``detectors``;
the composition root hands the AI package the models a hub runs (``hub.ai.setup``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pydicom.sr.coding import Code

# What a result may measure: key -> (code, UCUM unit). PS3.16 codes where there is one.
AREA = Code("42798000", "SCT", "Area")
CELL_COUNT = Code("246205007", "SCT", "Quantity")
MEASURES: dict[str, tuple[Code, Code]] = {
    "tissue_area_mm2": (AREA, Code("mm2", "UCUM", "square millimeter")),
    "nuclei_count": (CELL_COUNT, Code("{count}", "UCUM", "count")),
    "nuclei_per_mm2": (
        Code("nuclei-per-mm2", "99TESSERA", "Nuclei density"),
        Code("/mm2", "UCUM", "per square millimeter"),
    ),
}


class AnalysisError(Exception):
    """An analysis that produced nothing to store; ``status`` is the HTTP status it maps to."""

    status = 502

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnreadableSlide(AnalysisError):
    """The image cannot be analysed as a slide (no pixel spacing, pixels that do not decode)."""

    status = 422


@dataclass(frozen=True)
class Slide:
    """A slide as a model sees it: its lowest-resolution level whole, and level-0 regions.

    Pixel coordinates are level-0 (column, row); spacings are millimetres per pixel.
    """

    overview: np.ndarray  # RGB uint8 of the lowest-resolution level
    size: tuple[int, int]  # level-0 (width, height)
    spacing_mm: float  # level 0
    read: Callable[[int, int, int, int], np.ndarray]  # level-0 region (x, y, w, h) -> RGB

    @property
    def overview_scale(self) -> float:
        """Level-0 pixels per overview pixel."""
        return self.size[0] / self.overview.shape[1]


@dataclass(frozen=True)
class Result:
    """What a model found: region outlines and points in level-0 pixels, and measurements
    (keys of ``MEASURES``)."""

    regions: list[np.ndarray] = field(default_factory=list)  # each (n >= 3, 2)
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    measurements: Mapping[str, float] = field(default_factory=dict)
    label: str = "Tissue"  # what the regions or points are (the annotation group's label)


class Model(Protocol):
    name: str
    version: str
    family: Code
    parameters: Mapping[str, str]
    manufacturer: str

    def analyse(self, slide: Slide) -> Result: ...


def checked(result: object, slide: Slide) -> Result:
    """The model's answer if it is something the hub can store, else AnalysisError saying why."""
    if not isinstance(result, Result):
        raise AnalysisError(f"the model answered {type(result).__name__}, not a Result")
    width, height = slide.size
    for n, region in enumerate(result.regions, start=1):
        outline = np.asarray(region, dtype=float)
        if outline.ndim != 2 or outline.shape[1] != 2 or len(outline) < 3:
            raise AnalysisError(f"region {n} is not an outline of at least 3 points")
        _inside(outline, width, height, f"region {n}")
    points = np.asarray(result.points, dtype=float)
    if points.size and (points.ndim != 2 or points.shape[1] != 2):
        raise AnalysisError("points must be (column, row) pairs")
    _inside(points.reshape(-1, 2), width, height, "a point")
    if not result.regions and not points.size and not result.measurements:
        raise AnalysisError("the model found nothing it could report")
    for key, value in result.measurements.items():
        if key not in MEASURES:
            raise AnalysisError(f"unknown measurement {key!r}")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise AnalysisError(f"measurement {key} is not a finite number >= 0: {value!r}")
    return result


def _inside(xy: np.ndarray, width: int, height: int, what: str) -> None:
    if not np.isfinite(xy).all() or ((xy < 0) | (xy > (width, height))).any():
        raise AnalysisError(f"{what} lies outside the {width} x {height} image")
