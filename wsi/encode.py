"""Decode source regions and encode DICOM frames; runs inside worker processes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsi.sources import RegionReader, open_reader


@dataclass(frozen=True)
class Codec:
    name: str
    transfer_syntax: str
    photometric: str
    lossy: bool
    method: str  # LossyImageCompressionMethod when lossy


CODECS = {
    "jpeg": Codec("jpeg", "1.2.840.10008.1.2.4.50", "YBR_FULL_422", True, "ISO_10918_1"),
    "jpeg2000-lossless": Codec("jpeg2000-lossless", "1.2.840.10008.1.2.4.90", "YBR_RCT", False, ""),
    "jpegls-lossless": Codec("jpegls-lossless", "1.2.840.10008.1.2.4.80", "RGB", False, ""),
}


def codec_for(option: str) -> Codec:
    return CODECS["jpeg" if option == "passthrough-or-jpeg" else option]


def encode(image: np.ndarray, codec: str, quality: int) -> bytes:
    import imagecodecs

    if codec == "jpeg":
        return imagecodecs.jpeg8_encode(image, level=quality, subsampling="420")
    if codec == "jpeg-rgb":  # same colour model as Aperio's RGB-coded tiles, for mending them
        return imagecodecs.jpeg8_encode(
            image, level=quality, colorspace="RGB", outcolorspace="RGB", subsampling="444"
        )
    if codec == "jpeg2000-lossless":
        return imagecodecs.jpeg2k_encode(
            image, level=0, codecformat="j2k", reversible=True, mct=True
        )
    if codec == "jpegls-lossless":
        return imagecodecs.jpegls_encode(image, level=0)
    raise ValueError(codec)


@dataclass(frozen=True)
class TileJob:
    """Tiles tx0..tx1-1 of tile row ty of one output level."""

    width: int  # output level size
    height: int
    tile_width: int
    tile_height: int
    read_level: int
    read_width: int  # size of the source level decoded
    read_height: int
    scale: float  # source-level pixels per output pixel
    codec: str
    quality: int
    ty: int
    tx0: int
    tx1: int


_reader: RegionReader | None = None


def init_worker(kind: str, path: str) -> None:
    global _reader
    _reader = open_reader(kind, Path(path))


def run_job(job: TileJob) -> list[bytes]:
    assert _reader is not None, "init_worker was not called in this process"
    return encode_tiles(_reader, job)


def encode_tiles(reader: RegionReader, job: TileJob) -> list[bytes]:
    tw = job.tile_width
    strip = read_strip(reader, job)
    return [
        encode(np.ascontiguousarray(strip[:, i * tw : (i + 1) * tw]), job.codec, job.quality)
        for i in range(job.tx1 - job.tx0)
    ]


def read_strip(reader: RegionReader, job: TileJob) -> np.ndarray:
    """The job's tiles side by side, resampled from the source level, white beyond the edge."""
    tw, th = job.tile_width, job.tile_height
    x, y = job.tx0 * tw, job.ty * th
    w, h = (job.tx1 - job.tx0) * tw, th
    visible_w, visible_h = min(w, job.width - x), min(h, job.height - y)
    out = np.full((h, w, 3), 255, dtype=np.uint8)
    sx, sy = math.floor(x * job.scale), math.floor(y * job.scale)
    sw = min(math.ceil(visible_w * job.scale), job.read_width - sx)
    sh = min(math.ceil(visible_h * job.scale), job.read_height - sy)
    if sw <= 0 or sh <= 0:
        return out
    region = reader.read(job.read_level, sx, sy, sw, sh)
    if (sw, sh) != (visible_w, visible_h):
        from PIL import Image

        region = np.asarray(
            Image.fromarray(region).resize((visible_w, visible_h), Image.Resampling.BOX)
        )
    out[:visible_h, :visible_w] = region
    return out
