"""The built-in models: deterministic scikit-image algorithms that need no downloaded weights.

``TissueDetector`` thresholds the slide's lowest-resolution level (Otsu on the grey level:
tissue is darker than the glass). ``NucleiDetector`` looks at the level-0 tiles inside that
tissue: colour deconvolution to haematoxylin (``rgb2hed``), an Otsu threshold per tile and
connected components of nucleus size. Both are pure functions of the pixels and their
parameters, so the same slide gives the same answer every time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
from pydicom.sr.coding import Code
from scipy import ndimage
from skimage import color, filters, measure, morphology

from hub.ai.model import Result, Slide

# PS3.16 CID 7162 (Algorithm Families): both threshold a histogram (Otsu).
FAMILY = Code("123105", "DCM", "Histogram Analysis")
MANUFACTURER = "Tessera"


class TissueDetector:
    """Tissue regions on the lowest-resolution level and their area in mm²."""

    name = "tessera-tissue"
    family = FAMILY
    manufacturer = MANUFACTURER

    def __init__(self, version: str = "1.0", min_region_mm2: float = 0.001) -> None:
        self.version = version
        self.min_region_mm2 = min_region_mm2

    @property
    def parameters(self) -> Mapping[str, str]:
        return {"threshold": "otsu", "min_region_mm2": str(self.min_region_mm2)}

    def analyse(self, slide: Slide) -> Result:
        mask = tissue_mask(slide, self.min_region_mm2)
        spacing = slide.spacing_mm * slide.overview_scale
        return Result(
            regions=outlines(mask, slide.overview_scale),
            measurements={"tissue_area_mm2": float(mask.sum()) * spacing * spacing},
            label="Tissue",
        )


class NucleiDetector:
    """Nuclei centres in the tissue of level 0, their count and their count per mm² of tissue."""

    name = "tessera-nuclei"
    family = FAMILY
    manufacturer = MANUFACTURER
    tile = 512  # level-0 pixels analysed at once
    margin = 16  # read around each tile, so that a nucleus on its border is seen whole

    def __init__(
        self,
        version: str = "1.0",
        min_nucleus_um2: float = 10.0,
        max_nucleus_um2: float = 400.0,
        min_haematoxylin: float = 0.02,
    ) -> None:
        self.version = version
        self.min_nucleus_um2 = min_nucleus_um2
        self.max_nucleus_um2 = max_nucleus_um2
        self.min_haematoxylin = min_haematoxylin

    @property
    def parameters(self) -> Mapping[str, str]:
        return {
            "stain": "haematoxylin (rgb2hed)",
            "threshold": "otsu per tile",
            "tile": str(self.tile),
            "min_nucleus_um2": str(self.min_nucleus_um2),
            "max_nucleus_um2": str(self.max_nucleus_um2),
            "min_haematoxylin": str(self.min_haematoxylin),
        }

    def analyse(self, slide: Slide) -> Result:
        mask = tissue_mask(slide, 0.0)
        spacing = slide.spacing_mm * slide.overview_scale
        area_mm2 = float(mask.sum()) * spacing * spacing
        found = [c for x, y in self._tiles(slide, mask) for c in self._nuclei(slide, mask, x, y)]
        points = np.array(found, dtype=float).reshape(-1, 2)
        return Result(
            points=points,
            measurements={
                "tissue_area_mm2": area_mm2,
                "nuclei_count": float(len(points)),
                "nuclei_per_mm2": len(points) / area_mm2 if area_mm2 else 0.0,
            },
            label="Nucleus",
        )

    def _tiles(self, slide: Slide, mask: np.ndarray) -> Iterator[tuple[int, int]]:
        """The level-0 origins of the tiles that touch tissue."""
        width, height = slide.size
        scale = slide.overview_scale
        for y in range(0, height, self.tile):
            for x in range(0, width, self.tile):
                window = mask[
                    int(y / scale) : int(np.ceil((y + self.tile) / scale)),
                    int(x / scale) : int(np.ceil((x + self.tile) / scale)),
                ]
                if window.any():
                    yield x, y

    def _nuclei(self, slide: Slide, mask: np.ndarray, x: int, y: int) -> list[tuple[float, float]]:
        """Centres (level-0 pixels) of the nuclei whose centre lies in the tile at (x, y) and in
        tissue."""
        width, height = slide.size
        left, top = max(0, x - self.margin), max(0, y - self.margin)
        right = min(width, x + self.tile + self.margin)
        bottom = min(height, y + self.tile + self.margin)
        haematoxylin = color.rgb2hed(slide.read(left, top, right - left, bottom - top))[..., 0]
        if np.ptp(haematoxylin) <= 0:
            return []
        level = max(filters.threshold_otsu(haematoxylin), self.min_haematoxylin)
        pixel_um2 = (slide.spacing_mm * 1000) ** 2
        labels = measure.label(haematoxylin > level)
        scale = slide.overview_scale
        centres = []
        for region in measure.regionprops(labels):
            if not self.min_nucleus_um2 <= region.area * pixel_um2 <= self.max_nucleus_um2:
                continue
            row, column = region.centroid
            cx, cy = left + column, top + row
            in_tile = x <= cx < x + self.tile and y <= cy < y + self.tile
            if (
                in_tile
                and mask[
                    min(int(cy / scale), mask.shape[0] - 1), min(int(cx / scale), mask.shape[1] - 1)
                ]
            ):
                centres.append((round(cx, 2), round(cy, 2)))
        return centres


def tissue_mask(slide: Slide, min_region_mm2: float) -> np.ndarray:
    """Tissue pixels of the overview: darker than Otsu's threshold of its grey levels, holes
    filled, specks smaller than ``min_region_mm2`` dropped."""
    grey = color.rgb2gray(slide.overview[..., :3])
    if np.ptp(grey) <= 0:
        return np.zeros(grey.shape, bool)
    mask = ndimage.binary_fill_holes(grey < filters.threshold_otsu(grey))
    spacing = slide.spacing_mm * slide.overview_scale
    smallest = int(min_region_mm2 / (spacing * spacing))
    if smallest > 1:
        mask = morphology.remove_small_objects(mask, max_size=smallest)
    return mask


def outlines(mask: np.ndarray, scale: float) -> list[np.ndarray]:
    """One simplified outline per connected region of ``mask``, in level-0 (column, row)."""
    found = []
    padded = np.pad(mask, 1)
    for contour in measure.find_contours(padded.astype(float), 0.5):
        outline = measure.approximate_polygon(contour, tolerance=1.0)[:-1]  # open: no repeat
        if len(outline) >= 3 and _encloses(contour):
            rows, columns = (outline[:, 0] - 1) * scale, (outline[:, 1] - 1) * scale
            width, height = mask.shape[1] * scale, mask.shape[0] * scale
            found.append(np.column_stack([columns.clip(0, width), rows.clip(0, height)]))
    return found


def _encloses(contour: np.ndarray) -> bool:
    """An outer boundary, not a hole's: find_contours runs outer boundaries anticlockwise."""
    rows, columns = contour[:, 0], contour[:, 1]
    return float(np.dot(columns, np.roll(rows, -1)) - np.dot(rows, np.roll(columns, -1))) > 0
