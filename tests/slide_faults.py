"""Slides broken on purpose, made at test time from corpus files.

Kept out of conftest.py so that test modules can import it by a name no other folder uses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import tifffile

NDPI = "wsi/test3-DAPI-2.ndpi"


def ndpi_with_broken_level0(corpus: Path, target: Path) -> Path:
    """A copy of the corpus NDPI whose level-0 stripes are zeroed from the middle on for 50 kB:
    the smaller levels (stored after it in the file) convert, re-tiling level 0 fails."""
    shutil.copy(corpus / NDPI, target)
    with tifffile.TiffFile(target) as tif:
        page = tif.pages.first
        middle = page.dataoffsets[len(page.dataoffsets) // 2]
        assert middle + 50_000 < page.dataoffsets[-1]
    with target.open("r+b") as f:
        f.seek(middle)
        f.write(bytes(50_000))
    return target
