"""Decoding and rendering for WADO-RS: runs in an executor, never on the event loop."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_voi_lut, pixel_array

from hub.dicomweb.media import DECODED_TS

DEFAULT_THUMBNAIL = 256


def decoded_frame(path: Path, index: int) -> bytes:
    """One frame as native little-endian pixel bytes (colour converted to RGB)."""
    return np.ascontiguousarray(_frame(path, index)).astype(_native_dtype(path)).tobytes()


def _frame(path: Path, index: int) -> np.ndarray:
    # Opened here: pydicom resolves a path it is given, and a materialized blob's path may
    # be a link to a file without a name (hub.archive.blobs: ``materialize``).
    with open(path, "rb") as f:
        return pixel_array(f, index=index)


def _native_dtype(path: Path) -> np.dtype:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    bits = int(ds.get("BitsAllocated", 8))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if bits <= 8:
        return np.dtype("i1" if signed else "u1")
    if bits <= 16:
        return np.dtype("<i2" if signed else "<u2")
    return np.dtype("<i4" if signed else "<u4")


def decoded_instance(path: Path) -> bytes:
    """The whole instance transcoded to Explicit VR Little Endian."""
    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    else:
        ds.file_meta.TransferSyntaxUID = DECODED_TS
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def rendered(
    path: Path,
    index: int,
    media_type: str,
    viewport: tuple[int, int] | None,
    quality: int,
) -> bytes:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    pixels = _frame(path, index)
    image = _to_image(ds, pixels)
    if viewport:
        image.thumbnail(viewport, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if media_type == "image/png":
        image.save(out, format="PNG")
    else:
        image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _to_image(ds: pydicom.Dataset, pixels: np.ndarray) -> Image.Image:
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples == 3:
        return Image.fromarray(_to_uint8(pixels), "RGB")
    if "PALETTE" in str(ds.get("PhotometricInterpretation", "")):
        from pydicom.pixels import apply_color_lut

        return Image.fromarray(_to_uint8(apply_color_lut(pixels, ds)), "RGB")
    values = pixels.astype(np.float64)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        values = values * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    if "WindowCenter" in ds and "WindowWidth" in ds:
        values = apply_voi_lut(values, ds)
    grey = _stretch(values)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        grey = 255 - grey
    return Image.fromarray(grey, "L")


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return ((values - low) * (255.0 / (high - low))).clip(0, 255).astype(np.uint8)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    return _stretch(pixels.astype(np.float64))
