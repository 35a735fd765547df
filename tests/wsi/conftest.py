"""Corpus slides, and vendor slides made at test time (vendor_fixtures.py), converted once per
session and shared by the wsi tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
import vendor_fixtures

from wsi import ConvertOptions, convert_slide
from wsi.pyramid import PlannedLevel, plan
from wsi.sources import open_slide

SLIDES = [
    "CMU-1-Small-Region.svs",
    "small.svs",
    "small_HE_levels.tiff",
    "test3-DAPI-2.ndpi",
]
BAD = ["unreadable.svs", "unopenable.tiff", "small_dicom_nonconformant.dcm"]


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


@pytest.fixture(scope="session")
def wsi_converted(corpus: Path, tmp_path_factory) -> dict[str, Converted]:
    """Every corpus and synthetic slide converted with default options."""
    out = {}
    made = tmp_path_factory.mktemp("synthetic-slides")
    for name in SLIDES + list(vendor_fixtures.SLIDES):
        src = corpus / "wsi" / name
        if name in vendor_fixtures.SLIDES:
            src = made / name
            vendor_fixtures.SLIDES[name](corpus, src)
        target = tmp_path_factory.mktemp("wsi") / name
        paths = convert_slide(src, target)
        out[name] = Converted(src, paths, plan(open_slide(src), ConvertOptions()))
    return out


@pytest.fixture(params=SLIDES + list(vendor_fixtures.SLIDES))
def slide(request, wsi_converted) -> Converted:
    return wsi_converted[request.param]
