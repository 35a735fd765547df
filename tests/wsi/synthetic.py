"""Vendor slides written at test time, for formats the corpus has no sample of.

Each maker writes a small file that OpenSlide itself detects as the vendor's, with tissue pixels
from the corpus, so that the converter's gates (dciodvfy, pixels against OpenSlide, passthrough)
run on it like on a corpus slide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

TILE = 256


def tissue(corpus: Path, width: int, height: int) -> np.ndarray:
    """Real tissue pixels (CMU-1 level 0, repeated) of the given size."""
    with tifffile.TiffFile(corpus / "wsi" / "CMU-1-Small-Region.svs") as tif:
        base = tif.pages[0].asarray()
    reps = (-(-height // base.shape[0]), -(-width // base.shape[1]), 1)
    return np.ascontiguousarray(np.tile(base, reps)[:height, :width])


def _ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Full-range (JFIF) YCbCr, as Aperio's 33003 tiles hold it without a JPEG 2000 MCT."""
    f = rgb.astype(np.float32)
    y = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    cb = 128 - 0.168736 * f[..., 0] - 0.331264 * f[..., 1] + 0.5 * f[..., 2]
    cr = 128 + 0.5 * f[..., 0] - 0.418688 * f[..., 1] - 0.081312 * f[..., 2]
    return np.clip(np.rint(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def _j2k_tiles(image: np.ndarray, ycbcr: bool) -> Iterator[bytes]:
    height, width = image.shape[:2]
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            tile = np.full((TILE, TILE, 3), 255, np.uint8)
            part = image[y : y + TILE, x : x + TILE]
            tile[: part.shape[0], : part.shape[1]] = part
            # Aperio's encoder: irreversible 9-7 wavelet, no multiple-component transform.
            yield imagecodecs.jpeg2k_encode(
                _ycbcr(tile) if ycbcr else tile,
                level=45,
                codecformat="j2k",
                reversible=False,
                mct=False,
            )


def aperio_j2k(compression: int) -> Callable[[Path, Path], None]:
    """An Aperio SVS whose levels are JPEG 2000 tiles: 33005 holds RGB, 33003 YCbCr."""

    def make(corpus: Path, path: Path) -> None:
        base = tissue(corpus, 1500, 1100)
        levels = [base, base[::2, ::2]]
        head = "Aperio Image Library v12.0.15 \r\n1500x1100 [0,0 1500x1100] (256x256) J2K/KDU Q=70"
        props = "|AppMag = 20|MPP = 0.4990|Date = 03/12/21|Time = 10:11:12|Filename = synthetic"
        with tifffile.TiffWriter(path) as tif:
            for index, level in enumerate(levels):
                tif.write(
                    _j2k_tiles(level, ycbcr=compression == 33003),
                    shape=level.shape,
                    dtype=np.uint8,
                    tile=(TILE, TILE),
                    compression=compression,
                    photometric="rgb",
                    description=head + props if index == 0 else head,
                    metadata=None,
                )
                if index == 0:  # Aperio's second directory: the stripped thumbnail
                    tif.write(
                        base[::8, ::8],
                        compression="jpeg",
                        photometric="rgb",
                        description="Aperio Image Library v12.0.15 \r\n187x137 -> thumbnail",
                        metadata=None,
                    )
            # Label and macro: stripped, and marked reduced-resolution (+ macro) as Aperio does.
            tif.write(
                np.full((200, 300, 3), 230, np.uint8),
                compression="lzw",
                photometric="rgb",
                subfiletype=1,
                description="Aperio Image Library v12.0.15\nlabel 300x200",
                metadata=None,
            )
            tif.write(
                tissue(corpus, 800, 300),
                compression="jpeg",
                photometric="rgb",
                subfiletype=9,
                description="Aperio Image Library v12.0.15\nmacro 800x300",
                metadata=None,
            )

    return make


SLIDES: dict[str, Callable[[Path, Path], None]] = {
    "synthetic-aperio-j2k-rgb.svs": aperio_j2k(33005),
    "synthetic-aperio-j2k-ycbcr.svs": aperio_j2k(33003),
}
