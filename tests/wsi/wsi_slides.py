"""The corpus slides the wsi tests convert, and what a conversion made; a module of its own so
that tests import it by a name no other test folder uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from wsi.pyramid import PlannedLevel

SLIDES = [
    "CMU-1-Small-Region.svs",
    "small.svs",
    "small_HE_levels.tiff",
    "test3-DAPI-2.ndpi",
]


@dataclass
class Converted:
    source: Path
    paths: list[Path]
    plan: list[PlannedLevel]  # the level plan the converter followed, largest first

    def headers(self) -> list[pydicom.Dataset]:
        return [pydicom.dcmread(p, stop_before_pixels=True) for p in self.paths]

    def volume_paths(self) -> list[Path]:
        return [p for p in self.paths if p.name.startswith("level")]

    def header(self, name: str) -> pydicom.Dataset:
        return pydicom.dcmread(
            next(p for p in self.paths if p.name == name), stop_before_pixels=True
        )
