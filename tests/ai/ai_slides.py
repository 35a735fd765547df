"""A real stained slide for the AI tests: scikit-image's immunohistochemistry sample (a 512 x 512
crop of a stained section, haematoxylin-counterstained) laid twice on blank glass and converted by
``wsi`` into a tiled DICOM pyramid. The tiles are JPEG-LS lossless, so the pixels the models see
are exactly the sample's, and what the models answer is the same on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from skimage import data

from wsi import ConvertOptions, SlideIds, convert_slide

SPACING_UM = 0.5  # micrometres per pixel at level 0
GLASS = 242  # the grey level of blank glass
ORIGINS = ((256, 256), (1280, 256))  # where the two sections lie (column, row)
SIZE = (2048, 1024)
SECTION_MM2 = 512 * 512 * (SPACING_UM / 1000) ** 2  # 0.065536 mm² each


def stained_section() -> np.ndarray:
    return data.immunohistochemistry()


def slide_pixels() -> np.ndarray:
    canvas = np.full((SIZE[1], SIZE[0], 3), GLASS, np.uint8)
    section = stained_section()
    for x, y in ORIGINS:
        canvas[y : y + 512, x : x + 512] = section
    return canvas


def convert(folder: Path) -> list[Path]:
    """The slide's pyramid levels (level 0 first) as DICOM files in ``folder``."""
    source = folder / "ihc.tif"
    resolution = 1e4 / SPACING_UM  # pixels per centimetre
    with tifffile.TiffWriter(source) as tiff:
        tiff.write(
            slide_pixels(),
            tile=(256, 256),
            photometric="rgb",
            compression="zlib",
            resolution=(resolution, resolution),
            resolutionunit="CENTIMETER",
        )
    options = ConvertOptions(codec="jpegls-lossless", tile_size=256, min_level_size=256, workers=1)
    ids = SlideIds(patient_id="AI-1", patient_name="Stain^Sample", accession="AI1")
    paths = convert_slide(source, folder / "dicom", ids, options)
    return sorted((p for p in paths if p.name.startswith("level")), key=lambda p: p.name)
