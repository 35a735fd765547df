"""Every format OpenSlide reads (SVS, NDPI, VMS, MRXS, Philips TIFF, SCN, BIF, SVSlide, ...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide


def on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite OpenSlide's RGBA (transparent outside the scanned area) onto white."""
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    a = alpha[..., None].astype(np.uint16)
    rgb = (rgba[..., :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return rgb.astype(np.uint8)


class OpenSlideRegionReader:
    def __init__(self, path: Path) -> None:
        self._slide = openslide.OpenSlide(path)
        self._downsamples = self._slide.level_downsamples

    def close(self) -> None:
        self._slide.close()

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        ds = self._downsamples[level]
        region = self._slide.read_region((round(x * ds), round(y * ds)), level, (w, h))
        return on_white(np.asarray(region))

    def associated(self, name: str) -> np.ndarray:
        return on_white(np.asarray(self._slide.associated_images[name].convert("RGBA")))
