"""Decode source regions and encode DICOM frames; runs inside worker processes."""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from wsi.sources import RegionReader, open_reader
from wsi.sources.model import SlideInfo
from wsi.sources.raster import paste


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


# One channel per frame (MONOCHROME2, 8 or 16 bits): lossless unless JPEG is asked for (8 bits).
MONO_CODECS = {
    "jpeg": Codec("jpeg-mono", JPEG_BASELINE, "MONOCHROME2", True, "ISO_10918_1"),
    "jpeg2000-lossless": Codec(
        "jpeg2000-lossless", "1.2.840.10008.1.2.4.90", "MONOCHROME2", False, ""
    ),
    "jpegls-lossless": Codec("jpegls-lossless", "1.2.840.10008.1.2.4.80", "MONOCHROME2", False, ""),
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
    if codec == "jpeg-mono":
        return imagecodecs.jpeg8_encode(image, level=quality)
    if codec == "jpeg-ycbcr420":
        return imagecodecs.jpeg8_encode(image, level=quality, subsampling="420")
    if codec == "jpeg2000-lossless":
        return imagecodecs.jpeg2k_encode(
            image, level=0, codecformat="j2k", reversible=True, mct=image.ndim == 3
        )
    if codec == "jpegls-lossless":
        # CharLS's output can exceed imagecodecs' buffer estimate on noise-like tiles (16-bit
        # sensor noise, for one): room for twice the raw size, trimmed to what is written.
        return imagecodecs.jpegls_encode(image, level=0, out=2 * image.nbytes + 4096)
    raise ValueError(codec)


@dataclass(frozen=True)
class TileJob:
    """Tiles tx0..tx1-1 of tile row ty of one output level."""

    width: int  # output level size
    height: int
    tile_width: int
    tile_height: int
    read_level: int
    scale: float  # source-level pixels per output pixel
    codec: str
    quality: int
    ty: int
    tx0: int
    tx1: int


class SlideAccess:
    """Per-process access to the source pixels.

    Levels with raw JPEG / JPEG 2000 tiles are decoded here tile by tile with imagecodecs (several
    times faster than OpenSlide's read_region, which composites ARGB); everything else, and any tile
    that will not decode, goes through the slide's region reader (OpenSlide or tifffile).
    """

    def __init__(self, slide: SlideInfo) -> None:
        self.slide = slide
        self._reader: RegionReader | None = None
        self._fd: int | None = None

    @property
    def reader(self) -> RegionReader:
        if self._reader is None:
            self._reader = open_reader(self.slide.reader, self.slide.path)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._fd is not None:
            os.close(self._fd)

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB pixels of a region of a source level, white beyond its edge."""
        source = self.slide.levels[level]
        raw = source.passthrough
        if raw is None or raw.retiled:
            return self.reader.read(level, x, y, w, h)
        tw, th = source.tile_width, source.tile_height
        across = math.ceil(source.width / tw)
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        for ty in range(max(y, 0) // th, (min(y + h, source.height) - 1) // th + 1):
            for tx in range(max(x, 0) // tw, (min(x + w, source.width) - 1) // tw + 1):
                tile = self.decoded_tile(level, ty * across + tx)
                visible = tile[: source.height - ty * th, : source.width - tx * tw]
                paste(out, visible, tx * tw - x, ty * th - y)
        return out

    def decoded_tile(self, level: int, index: int) -> np.ndarray:
        """One raw tile of a level, decoded (full tile size, edge padding included)."""
        import imagecodecs

        source = self.slide.levels[level]
        raw = source.passthrough
        assert raw is not None
        count = int(raw.bytecounts[index])
        if count:
            if self._fd is None:
                self._fd = os.open(self.slide.path, os.O_RDONLY)
            data = os.pread(self._fd, count, int(raw.offsets[index]))
            try:
                if raw.codec == "jpeg":
                    return imagecodecs.jpeg8_decode(raw.prefix + data[raw.strip :])
                return imagecodecs.jpeg2k_decode(data)
            except Exception:  # noqa: S110 - a broken tile: let the slide reader try it below
                pass
        ty, tx = divmod(index, math.ceil(source.width / source.tile_width))
        x, y = tx * source.tile_width, ty * source.tile_height
        return self.reader.read(level, x, y, source.tile_width, source.tile_height)


SLOT_BYTES = 8 << 20  # room for one job's frames in the memory shared with the parent

_access: SlideAccess | None = None
_slots: memoryview | None = None


def init_worker(slide: SlideInfo, slots: mmap.mmap | None = None) -> None:
    """Pool initializer; with the fork start method ``slide`` arrives without pickling, and
    ``slots`` (a shared anonymous mapping, inherited) lets frames come back without a pipe."""
    global _access, _slots
    _access = SlideAccess(slide)
    _slots = memoryview(slots) if slots is not None else None


def run_job(job: TileJob, slot: int | None = None) -> list[bytes] | tuple[int, ...]:
    """The job's frames; or, when they fit into shared slot ``slot``, only their lengths (the
    frames lie there one after another): pickling them through a pipe costs 4 copies."""
    assert _access is not None, "init_worker was not called in this process"
    frames = encode_tiles(_access, job)
    if _slots is None or slot is None or sum(map(len, frames)) > SLOT_BYTES:
        return frames
    pos = slot * SLOT_BYTES
    for frame in frames:
        _slots[pos : pos + len(frame)] = frame
        pos += len(frame)
    return tuple(map(len, frames))


def encode_tiles(access: SlideAccess, job: TileJob) -> list[bytes]:
    same = _same_tiles(access.slide, job)
    if same is not None:  # re-encoding a source level tile for tile: no strip to assemble
        first = job.ty * same + job.tx0
        return [
            encode(access.decoded_tile(job.read_level, first + i), job.codec, job.quality)
            for i in range(job.tx1 - job.tx0)
        ]
    tw = job.tile_width
    strip = read_strip(access, job)
    return [
        encode(np.ascontiguousarray(strip[:, i * tw : (i + 1) * tw]), job.codec, job.quality)
        for i in range(job.tx1 - job.tx0)
    ]


def _same_tiles(slide: SlideInfo, job: TileJob) -> int | None:
    """Tiles across, if the job's output tiles are exactly the source level's raw tiles."""
    source = slide.levels[job.read_level]
    if (
        source.passthrough is not None
        and job.scale == 1
        and (source.width, source.height) == (job.width, job.height)
        and (source.tile_width, source.tile_height) == (job.tile_width, job.tile_height)
    ):
        return math.ceil(source.width / source.tile_width)
    return None


def read_strip(access: SlideAccess, job: TileJob) -> np.ndarray:
    """The job's tiles side by side, resampled from the source level, white beyond the edge."""
    tw, th = job.tile_width, job.tile_height
    x, y, w = job.tx0 * tw, job.ty * th, (job.tx1 - job.tx0) * tw
    return read_resampled(access, job.read_level, job.scale, (job.width, job.height), x, y, w, th)


def read_resampled(
    access: SlideAccess,
    read_level: int,
    scale: float,
    size: tuple[int, int],
    x: int,
    y: int,
    w: int,
    h: int,
) -> np.ndarray:
    """Pixels (x, y, w, h) of a ``size`` level box-filtered from a source level, ``scale`` source
    pixels per output pixel; white beyond the edge."""
    visible_w, visible_h = min(w, size[0] - x), min(h, size[1] - y)
    out = np.full((h, w, 3), 255, dtype=np.uint8)
    sx, sy = math.floor(x * scale), math.floor(y * scale)
    # Readers return white beyond the level's edge, so integer factors stay exact there too.
    sw = math.ceil(visible_w * scale)
    sh = math.ceil(visible_h * scale)
    if sw <= 0 or sh <= 0:
        return out
    region = access.read(read_level, sx, sy, sw, sh)
    if (sw, sh) != (visible_w, visible_h):
        region = _downsample(region, scale, visible_w, visible_h)
    out[:visible_h, :visible_w] = region
    return out


def shrink(pixels: np.ndarray, factor: int, width: int, height: int) -> np.ndarray:
    """A whole level box-filtered down by an integer factor to width x height, white beyond its
    edge as the source readers give it."""
    full = (height * factor, width * factor)
    if pixels.shape[:2] != full:
        padded = np.full((*full, 3), 255, dtype=np.uint8)
        padded[: pixels.shape[0], : pixels.shape[1]] = pixels
        pixels = padded
    return _downsample(pixels, factor, width, height)


def tile_rows(pixels: np.ndarray, tile_width: int, tile_height: int) -> Iterator[list[np.ndarray]]:
    """A whole level cut into tiles, row by row, edge tiles padded with white."""
    height, width = pixels.shape[:2]
    for y in range(0, height, tile_height):
        row = []
        for x in range(0, width, tile_width):
            tile = pixels[y : y + tile_height, x : x + tile_width]
            if tile.shape[:2] != (tile_height, tile_width):
                padded = np.full((tile_height, tile_width, 3), 255, dtype=np.uint8)
                padded[: tile.shape[0], : tile.shape[1]] = tile
                tile = padded
            row.append(np.ascontiguousarray(tile))
        yield row


def _downsample(region: np.ndarray, scale: float, width: int, height: int) -> np.ndarray:
    """Box-filter ``region`` down to width x height: Pillow's reduce() (block mean) for integer
    factors, which is several times faster than resize(); resize(BOX) otherwise."""
    from PIL import Image

    image = Image.fromarray(region)
    factor = round(scale)
    if abs(scale - factor) < 1e-9 and factor > 1:
        image = image.reduce(factor)
        if image.size != (width, height):
            image = image.crop((0, 0, width, height))
        return np.asarray(image)
    return np.asarray(image.resize((width, height), Image.Resampling.BOX))
