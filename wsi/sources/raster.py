"""Small pixel-array helpers shared by the region readers."""

from __future__ import annotations

import numpy as np


def paste(out: np.ndarray, tile: np.ndarray, ox: int, oy: int) -> None:
    """Copy ``tile`` into ``out`` with its top-left corner at (ox, oy), clipped to ``out``."""
    h, w = out.shape[:2]
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + tile.shape[1], w), min(oy + tile.shape[0], h)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = tile[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
