"""Stills recorded at the clinic from the device's own video, before it is encoded for the
network: the page draws the local frame at its native size and sends it as PNG (lossless);
here it becomes one RLE Lossless frame for an Ultrasound Image. CPU work: run in an executor.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from telehealth.us_image import EncodedFrame, rle_lossless

MIN_SIDE, MAX_SIDE = 16, 8192


class SourceCaptureError(ValueError):
    """The uploaded still is not a PNG image of a usable size."""


def decode_still(data: bytes) -> np.ndarray:
    """The PNG's pixels as RGB (an opaque alpha channel, as a canvas writes, is dropped)."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise SourceCaptureError("the still is not an image") from None
    if image.format != "PNG":
        raise SourceCaptureError(f"the still must be PNG, not {image.format}")
    width, height = image.size
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise SourceCaptureError(f"a still of {width}x{height} is outside 16..8192 pixels a side")
    try:
        if image.mode in ("RGBA", "LA", "PA"):
            alpha = np.asarray(image.getchannel("A"))
            if alpha.min() < 255:
                raise SourceCaptureError("the still has transparent pixels")
        return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError) as exc:  # truncated or corrupt image data
        raise SourceCaptureError(f"the still cannot be decoded: {exc}") from None


def source_frame(data: bytes) -> EncodedFrame:
    rgb = decode_still(data)
    return EncodedFrame(rle_lossless(rgb), rgb.shape[0], rgb.shape[1], 0.0)
