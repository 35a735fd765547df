"""Corpus slides, and vendor slides made at test time (vendor_fixtures.py), converted once per
session and shared by the wsi tests (the names tests import are in wsi_slides.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import vendor_fixtures
from wsi_slides import SLIDES, Converted

from wsi import ConvertOptions, convert_slide
from wsi.pyramid import plan
from wsi.sources import open_slide


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
