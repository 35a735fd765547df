"""Write a multi-channel slide: one MONOCHROME2 instance per channel per pyramid level.

As DICOM WSI stores fluorescence, each instance holds one optical path (the channel), at the
source's 8 or 16 bits. Frames are encoded losslessly (JPEG-LS by default, or JPEG 2000) unless
8-bit JPEG is asked for, so each channel reads back with the source's pixels. Tiles are decoded and encoded in
threads: tifffile's decoders and imagecodecs release the GIL.

Each instance is handed over as soon as it is written when the conversion is progressive, the
smallest levels first (the small generated levels of every channel, then the source's levels
up to level 0), so that a viewer can open the slide while level 0 is still being encoded.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wsi.encode import MONO_CODECS, Codec, encode
from wsi.errors import ConversionError
from wsi.options import ConvertOptions
from wsi.pyramid import PlannedLevel
from wsi.report import ENCODED, GENERATED, Instance
from wsi.sources.channels import ChannelRegionReader
from wsi.sources.model import Associated, SlideInfo
from wsi.writer import FOUR_GIB, RATIO_PLACEHOLDER, FrameWriter, compression_ratio

if TYPE_CHECKING:
    from wsi.headers import Headers

_JOB_PIXELS = 4096 * 1024  # source pixels decoded per job: bounds its memory
# Generated levels up to this size are made whole in memory (32 MB at 16 bits), each from the
# one before it rather than from the source again.
_WHOLE_LEVEL_PIXELS = 16 << 20

Pixels = Callable[["_Job", int, int, int, int], np.ndarray]  # (job, x, y, w, h) -> samples
Finished = Callable[[list[Instance]], None]  # instances written, in staging


def channel_codec(slide: SlideInfo, options: ConvertOptions) -> Codec:
    assert slide.planes is not None
    if options.codec == "jpeg" and slide.planes.bits > 8:
        raise ConversionError(
            f"{slide.path.name}: JPEG baseline holds 8 bits, the channels have "
            f"{slide.planes.bits}; choose jpeg2000-lossless or jpegls-lossless"
        )
    if options.codec == "passthrough-or-jpeg":
        # Channels are kept as the scanner made them. JPEG-LS: as small as lossless JPEG 2000
        # on fluorescence (377 vs 378 MB on 5 x 6144^2 16-bit channels) and 5x faster to encode.
        return MONO_CODECS["jpegls-lossless"]
    return MONO_CODECS[options.codec]


def instance_names(levels: list[PlannedLevel], slide: SlideInfo) -> list[str]:
    """Level by level, channel by channel: level0-c0.dcm, level0-c1.dcm, ..."""
    return [f"level{i}-c{c}.dcm" for i in range(len(levels)) for c in range(len(slide.channels))]


@dataclass(frozen=True)
class _Job:
    level: PlannedLevel
    channel: int
    ty: int
    tx0: int
    tx1: int


class ChannelConversion:
    def __init__(
        self,
        slide: SlideInfo,
        headers: Headers,
        options: ConvertOptions,
        staging: Path,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        assert slide.planes is not None
        self.slide = slide
        self.headers = headers
        self.options = options
        self.staging = staging
        self.progress = progress
        self.codec = channel_codec(slide, options)
        self.bytes_per_sample = slide.planes.bits // 8
        self.total = self.done = 0

    def run(
        self,
        levels: list[PlannedLevel],
        names: list[str],
        photos: list[tuple[Associated, str]],
        finished: Finished,
    ) -> None:
        """Write every instance; ``names`` run level by level, channel by channel, then the
        photographs of the glass (label, overview). Each level is passed to ``finished`` once
        all its channels are written, so that no viewer shows a level with channels missing.
        Progressive: the photographs, the small generated levels (all of them together,
        smallest first: each channel's are made in turn from its plane in memory), then the
        others from the smallest up; else level 0 first and the photographs last."""
        count = len(self.slide.channels)
        self.total = sum(level.frames for level in levels) * count + len(photos)
        small = [
            lv for lv in levels if lv.generated and lv.width * lv.height <= _WHOLE_LEVEL_PIXELS
        ]
        large = [lv for lv in levels if lv not in small]
        reader = ChannelRegionReader(self.slide)
        try:
            with ThreadPoolExecutor(self.options.workers, thread_name_prefix="wsi-channel") as pool:
                written = _Written(self, pool, partial(self._pixels, reader), levels, names)
                first_photo = len(levels) * count + 1  # numbered after the pyramid
                if self.options.progressive:
                    finished(self._photos(photos, first_photo))
                    finished(written.small(small))
                    for level in large[::-1]:
                        finished(written.level(level))
                else:
                    for level in large:
                        finished(written.level(level))
                    finished(written.small(small))
                    finished(self._photos(photos, first_photo))
        finally:
            reader.close()

    def _photos(self, photos: list[tuple[Associated, str]], first: int) -> list[Instance]:
        """The photographs, numbered from ``first`` on (after the pyramid's instances)."""
        from wsi.convert import write_photo
        from wsi.sources.channels import read_photo

        made = []
        for number, (photo, name) in enumerate(photos, start=first):
            try:
                pixels = read_photo(self.slide.path, photo.name)
            except ConversionError:
                raise
            except Exception as exc:
                raise ConversionError(
                    f"{self.slide.path.name}: its {photo.kind.lower()} image is unreadable: {exc}"
                ) from exc
            made.append(write_photo(self, photo.kind, pixels, name, number))
            self._advance(1)
        return made

    def _whole(
        self,
        pool: ThreadPoolExecutor,
        read: Pixels,
        level: PlannedLevel,
        channel: int,
        kept: tuple[PlannedLevel, np.ndarray] | None,
    ) -> np.ndarray:
        """A generated level's plane of one channel: box-filtered from the level before it when
        that one is in memory at an integer factor, else read from the source piece by piece."""
        if kept is not None:
            factor = level.downsample / kept[0].downsample
            if factor > 1 and abs(factor - round(factor)) < 1e-9:
                return _box(kept[1], round(factor), level.width, level.height)
        dtype = np.uint8 if self.bytes_per_sample == 1 else np.uint16
        plane = np.zeros((level.height, level.width), dtype=dtype)
        tw, th = level.tile_width, level.tile_height
        jobs = self._jobs(level, channel)
        pieces = pool.map(lambda j: read(j, j.tx0 * tw, j.ty * th, (j.tx1 - j.tx0) * tw, th), jobs)
        try:
            for job, piece in zip(jobs, pieces, strict=True):
                x, y = job.tx0 * tw, job.ty * th
                h, w = min(th, level.height - y), min(piece.shape[1], level.width - x)
                plane[y : y + h, x : x + w] = piece[:h, :w]
        except ConversionError:
            raise
        except Exception as exc:
            raise self._undecodable(level, channel, exc) from exc
        return plane

    def _write(
        self,
        pool: ThreadPoolExecutor,
        read: Pixels,
        level: PlannedLevel,
        channel: int,
        name: str,
        number: int,
    ) -> None:
        jobs = self._jobs(level, channel)
        results = _in_order(
            pool, lambda job: self._encode(read, job), jobs, 2 * self.options.workers
        )
        header = self.headers.header(
            self.codec.transfer_syntax,
            kind="VOLUME",
            derived=level.generated,
            number=number,
            width=level.width,
            height=level.height,
            tile_width=level.tile_width,
            tile_height=level.tile_height,
            frames=level.frames,
            photometric=self.codec.photometric,
            lossy_history=[(self.codec.method, RATIO_PLACEHOLDER)] if self.codec.lossy else [],
            downsample=level.downsample,
            channel=channel,
        )
        raw_bytes = level.frames * level.tile_width * level.tile_height * self.bytes_per_sample
        writer = FrameWriter(self.staging / name, header, level.frames, large=raw_bytes >= FOUR_GIB)
        try:
            for job, frames in zip(jobs, results, strict=True):
                writer.write_batch([(frame, b"", 0) for frame in frames])
                self._advance(job.tx1 - job.tx0)
            writer.close(compression_ratio(raw_bytes, writer.compressed_bytes))
        except ConversionError:
            writer.abort()
            raise
        except Exception as exc:
            writer.abort()
            raise self._undecodable(level, channel, exc) from exc
        except BaseException:
            writer.abort()
            raise

    def _undecodable(self, level: PlannedLevel, channel: int, exc: Exception) -> ConversionError:
        label = self.slide.channels[channel].name
        return ConversionError(
            f"{self.slide.path.name}: cannot decode channel {label!r} for the "
            f"{level.width}x{level.height} level: {exc}"
        )

    def _jobs(self, level: PlannedLevel, channel: int) -> list[_Job]:
        scale = self._scale(level)
        tile_pixels = level.tile_width * level.tile_height * scale * scale
        per_job = max(1, int(_JOB_PIXELS // tile_pixels))
        return [
            _Job(level, channel, ty, tx0, min(tx0 + per_job, level.tiles_across))
            for ty in range(level.tiles_down)
            for tx0 in range(0, level.tiles_across, per_job)
        ]

    def _scale(self, level: PlannedLevel) -> float:
        return level.downsample / self.slide.levels[level.read_level].downsample

    def _encode(self, read: Pixels, job: _Job) -> list[bytes]:
        tw, th = job.level.tile_width, job.level.tile_height
        x, y, w = job.tx0 * tw, job.ty * th, (job.tx1 - job.tx0) * tw
        strip = read(job, x, y, w, th)
        quality = self.options.jpeg_quality
        return [
            encode(np.ascontiguousarray(strip[:, i * tw : (i + 1) * tw]), self.codec.name, quality)
            for i in range(job.tx1 - job.tx0)
        ]

    def _pixels(
        self, reader: ChannelRegionReader, job: _Job, x: int, y: int, w: int, h: int
    ) -> np.ndarray:
        """Pixels (x, y, w, h) of the job's level and channel, box-filtered from the source
        level when the level is generated; zero beyond the edge."""
        level, scale = job.level, self._scale(job.level)
        if scale == 1:
            return reader.read(level.read_level, job.channel, x, y, w, h)
        dtype = np.uint8 if self.bytes_per_sample == 1 else np.uint16
        out = np.zeros((h, w), dtype=dtype)
        visible_w, visible_h = min(w, level.width - x), min(h, level.height - y)
        sx, sy = math.floor(x * scale), math.floor(y * scale)
        sw, sh = math.ceil(visible_w * scale), math.ceil(visible_h * scale)
        region = reader.read(level.read_level, job.channel, sx, sy, sw, sh)
        out[:visible_h, :visible_w] = _box(region, scale, visible_w, visible_h)
        return out

    def _advance(self, frames: int) -> None:
        self.done += frames
        if self.progress is not None:
            self.progress(self.done, self.total)


class _Written:
    """The instances of a conversion, written a level or the small levels at a time."""

    def __init__(
        self,
        conversion: ChannelConversion,
        pool: ThreadPoolExecutor,
        read: Pixels,
        levels: list[PlannedLevel],
        names: list[str],
    ) -> None:
        self.conversion, self.pool, self.read = conversion, pool, read
        self.levels, self.names = levels, names
        self.count = len(conversion.slide.channels)

    def level(self, level: PlannedLevel) -> list[Instance]:
        return [self._one(self.read, level, channel) for channel in range(self.count)]

    def small(self, small: list[PlannedLevel]) -> list[Instance]:
        """The small generated levels, each channel's made in turn from its plane in memory;
        returned smallest first."""
        made: list[Instance] = []
        for channel in range(self.count):
            kept: tuple[PlannedLevel, np.ndarray] | None = None
            for level in small:
                plane = self.conversion._whole(self.pool, self.read, level, channel, kept)
                made.append(self._one(partial(_cut, plane), level, channel))
                kept = (level, plane)
        return sorted(made, key=lambda i: i.width)  # stable: channels stay in order

    def _one(self, read: Pixels, level: PlannedLevel, channel: int) -> Instance:
        index = self.levels.index(level) * self.count + channel
        name = self.names[index]
        self.conversion._write(self.pool, read, level, channel, name, index + 1)
        made = GENERATED if level.generated else ENCODED
        staged = self.conversion.staging / name
        return Instance(staged, "VOLUME", level.width, level.height, level.frames, made)


def _cut(plane: np.ndarray, job: _Job, x: int, y: int, w: int, h: int) -> np.ndarray:
    """(x, y, w, h) of a whole level's plane, zero beyond its edge."""
    out = np.zeros((h, w), dtype=plane.dtype)
    piece = plane[y : y + h, x : x + w]
    out[: piece.shape[0], : piece.shape[1]] = piece
    return out


def _box(region: np.ndarray, scale: float, width: int, height: int) -> np.ndarray:
    """Box-filter a greyscale region down to width x height (rounded block means)."""
    factor = round(scale)
    if abs(scale - factor) < 1e-9:
        rows, cols = height * factor, width * factor
        padded = np.zeros((rows, cols), dtype=region.dtype)
        padded[: min(rows, region.shape[0]), : min(cols, region.shape[1])] = region[:rows, :cols]
        blocks = padded.reshape(height, factor, width, factor).astype(np.float64)
        return np.rint(blocks.mean(axis=(1, 3))).astype(region.dtype)
    from PIL import Image

    resized = Image.fromarray(region.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BOX
    )
    limit = np.iinfo(region.dtype).max
    return np.clip(np.rint(np.asarray(resized)), 0, limit).astype(region.dtype)


def _in_order(
    pool: ThreadPoolExecutor, work: Callable[[_Job], list[bytes]], jobs: list[_Job], window: int
) -> Iterator[list[bytes]]:
    """work(job) for each job in threads, results in order, at most ``window`` in flight."""
    pending: deque[Future] = deque()
    waiting = iter(jobs)
    try:
        for job in waiting:
            pending.append(pool.submit(work, job))
            if len(pending) >= window:
                break
        while pending:
            result = pending.popleft().result()
            following = next(waiting, None)
            if following is not None:
                pending.append(pool.submit(work, following))
            yield result
    finally:
        for future in pending:
            future.cancel()
