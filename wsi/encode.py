"""Decode source regions and encode DICOM frames; runs inside worker processes."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from wsi.sources import RegionReader, open_reader


@dataclass(frozen=True)
class Codec:
    name: str  # what encode() is asked for
    transfer_syntax: str
    photometric: str
    lossy: bool
    method: str  # LossyImageCompressionMethod when lossy


JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
CODECS = {
    "jpeg-rgb": Codec("jpeg-rgb", JPEG_BASELINE, "RGB", True, "ISO_10918_1"),
    "jpeg-ycbcr420": Codec("jpeg-ycbcr420", JPEG_BASELINE, "YBR_FULL_422", True, "ISO_10918_1"),
    "jpeg2000-lossless": Codec("jpeg2000-lossless", "1.2.840.10008.1.2.4.90", "YBR_RCT", False, ""),
    "jpegls-lossless": Codec("jpegls-lossless", "1.2.840.10008.1.2.4.80", "RGB", False, ""),
}


def codec_for(option: str, jpeg_mode: str) -> Codec:
    return CODECS[f"jpeg-{jpeg_mode}" if option in ("jpeg", "passthrough-or-jpeg") else option]


def encode(image: np.ndarray, codec: str, quality: int) -> bytes:
    import imagecodecs

    if codec == "jpeg-rgb":
        # No colour transform, 4:4:4, every component on the luminance quantisation table (libjpeg
        # does that for RGB); libjpeg writes the Adobe APP14 marker that says "RGB".
        return imagecodecs.jpeg8_encode(
            image, level=quality, colorspace="RGB", outcolorspace="RGB", subsampling="444"
        )
    if codec == "jpeg-ycbcr420":
        return imagecodecs.jpeg8_encode(image, level=quality, subsampling="420")
    if codec == "jpeg2000-lossless":
        return imagecodecs.jpeg2k_encode(
            image, level=0, codecformat="j2k", reversible=True, mct=True
        )
    if codec == "jpegls-lossless":
        return imagecodecs.jpegls_encode(image, level=0)
    raise ValueError(codec)


@dataclass(frozen=True)
class RawTiles:
    """Source tiles on the output grid: decode them directly instead of via a region reader."""

    codec: str  # 'jpeg' | 'jpeg2000'
    prefix: bytes
    strip: int
    tiles: tuple[tuple[int, int], ...]  # (file offset, byte count) per tile of the job


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
    raw: RawTiles | None = None


class SlideAccess:
    """Per-process handles on the source: a region reader and a file descriptor, opened lazily."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self._reader: RegionReader | None = None
        self._fd: int | None = None

    @property
    def reader(self) -> RegionReader:
        if self._reader is None:
            self._reader = open_reader(self.kind, self.path)
        return self._reader

    def pread(self, offset: int, count: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return os.pread(self._fd, count, offset)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._fd is not None:
            os.close(self._fd)


_access: SlideAccess | None = None


def init_worker(kind: str, path: str) -> None:
    global _access
    _access = SlideAccess(kind, Path(path))


def run_job(job: TileJob) -> list[bytes]:
    assert _access is not None, "init_worker was not called in this process"
    return encode_tiles(_access, job)


def encode_tiles(access: SlideAccess, job: TileJob) -> list[bytes]:
    if job.raw is not None:
        return [
            encode(_decode_tile(access, job, i), job.codec, job.quality)
            for i in range(job.tx1 - job.tx0)
        ]
    tw = job.tile_width
    strip = read_strip(access.reader, job)
    return [
        encode(np.ascontiguousarray(strip[:, i * tw : (i + 1) * tw]), job.codec, job.quality)
        for i in range(job.tx1 - job.tx0)
    ]


def _decode_tile(access: SlideAccess, job: TileJob, i: int) -> np.ndarray:
    import imagecodecs

    raw = job.raw
    assert raw is not None
    offset, count = raw.tiles[i]
    if count:
        data = access.pread(offset, count)
        try:
            if raw.codec == "jpeg":
                return imagecodecs.jpeg8_decode(raw.prefix + data[raw.strip :])
            return imagecodecs.jpeg2k_decode(data)
        except Exception:  # broken tile: decode the region through the slide reader instead
            pass
    single = replace(job, tx0=job.tx0 + i, tx1=job.tx0 + i + 1, raw=None)
    return read_strip(access.reader, single)


def read_strip(reader: RegionReader, job: TileJob) -> np.ndarray:
    """The job's tiles side by side, resampled from the source level, white beyond the edge."""
    tw, th = job.tile_width, job.tile_height
    x, y = job.tx0 * tw, job.ty * th
    w, h = (job.tx1 - job.tx0) * tw, th
    visible_w, visible_h = min(w, job.width - x), min(h, job.height - y)
    out = np.full((h, w, 3), 255, dtype=np.uint8)
    sx, sy = math.floor(x * job.scale), math.floor(y * job.scale)
    # Readers return white beyond the level's edge, so integer factors stay exact there too.
    sw = math.ceil(visible_w * job.scale)
    sh = math.ceil(visible_h * job.scale)
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
