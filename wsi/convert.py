"""Convert one vendor slide into a staged set of DICOM files, then move them into place."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import mmap
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from wsi.codestream import JpegTileCheck, j2k_tile_complete
from wsi.encode import (
    JPEG_BASELINE,
    SLOT_BYTES,
    SlideAccess,
    TileJob,
    codec_for,
    encode,
    encode_tiles,
    init_worker,
    read_resampled,
    run_job,
    shrink,
    tile_rows,
)
from wsi.errors import ConversionError
from wsi.options import ConvertOptions, SlideIds
from wsi.pyramid import PlannedLevel, fit, plan, thumbnail_box
from wsi.report import COPIED, ENCODED, GENERATED, RETILED, Instance
from wsi.sources import open_slide
from wsi.sources.model import Associated, Passthrough, SlideInfo
from wsi.spacing import level0_spacing, slide_notes
from wsi.writer import FOUR_GIB, RATIO_PLACEHOLDER, FrameWriter, compression_ratio

if TYPE_CHECKING:
    from wsi.headers import Headers

Progress = Callable[[int, int], None]
OnInstance = Callable[[Instance], None]


class PhotoJob(Protocol):
    """What ``write_photo`` needs of a conversion."""

    slide: SlideInfo
    headers: Headers
    options: ConvertOptions
    staging: Path


_JOB_PIXELS = 4096 * 1024  # source pixels decoded per worker job: bounds its memory
# Below this many frames to encode, worker start-up (fork, codec imports) costs more than it saves:
# encode in this process instead (imagecodecs releases the GIL, so it still overlaps the copying).
_POOL_MIN_FRAMES = 256
# Pixels up to which a generated level is built whole in memory (12 MB of RGB).
_WHOLE_LEVEL_PIXELS = 4 << 20
# Instance numbers after the pyramid: the thumbnail, then the label and the overview last, so
# that viewers showing a series by its middle or first instance do not show the label.
_ASSOCIATED_ORDER = {"THUMBNAIL": 0, "LABEL": 1, "OVERVIEW": 2}


def convert(
    src: Path,
    out_dir: Path,
    ids: SlideIds,
    options: ConvertOptions,
    progress: Progress | None,
    headers: Headers,
    warn: Callable[[str], None] | None = None,
    on_instance: OnInstance | None = None,
) -> list[Path]:
    staging: Path | None = None
    job: _Conversion | None = None
    try:
        slide = open_slide(src, z=options.z, t=options.t)
        headers.bind(slide, ids, options.fallback_mpp)
        if warn is not None:
            for note in slide_notes(slide, level0_spacing(slide, options.fallback_mpp)):
                warn(note)
        levels = plan(slide, options)
        thumbnail = thumbnail_box(levels)
        wanted = {
            "LABEL": options.include_label,
            "OVERVIEW": options.include_overview,
            "THUMBNAIL": options.include_thumbnail and thumbnail is not None,
        }
        associated = sorted(
            (a for a in slide.associated if wanted[a.kind]),
            key=lambda a: _ASSOCIATED_ORDER[a.kind],
        )
        if slide.planes is not None:
            from wsi.channels import ChannelConversion, instance_names

            names = instance_names(levels, slide)
            photos = [(a, f"{a.kind.lower()}.dcm") for a in associated]
            names += [name for _, name in photos]
            staging = _staging(out_dir, names)
            handing = _Handover(staging, out_dir, on_instance, options.progressive)
            ChannelConversion(slide, headers, options, staging, progress).run(
                levels, names, photos, handing.finished
            )
            return handing.done(names)
        names = [f"level{i}.dcm" for i in range(len(levels))]
        names += [f"{a.kind.lower()}.dcm" for a in associated]
        staging = _staging(out_dir, names)
        job = _Conversion(slide, headers, options, staging, progress, thumbnail)
        job.out_dir, job.on_instance = out_dir, on_instance
        # Smallest first: thumbnail, label, overview, then the pyramid up to level 0.
        job.handover_order = names[len(levels) :] + names[: len(levels)][::-1]
        if options.progressive:
            out_dir.mkdir(parents=True, exist_ok=True)
        job.total = sum(level.frames for level in levels) + len(associated)
        numbered = list(enumerate(names, start=1))
        pyramid = list(zip(levels, numbered[: len(levels)], strict=True))
        copies = [(level, *n) for level, n in pyramid if level.passthrough]
        encodes = [(level, *n) for level, n in pyramid if not level.passthrough]
        extras = list(zip(associated, numbered[len(levels) :], strict=True))
        with job:
            job.run(copies, encodes, extras)
        if options.progressive:
            return [out_dir / name for name in names]
        published = _publish(staging, out_dir, names)
        for name in names:
            job.hand_over(name)
        return published
    except ConversionError:
        raise
    except OSError as exc:
        raise ConversionError(f"{src.name}: {exc}") from exc
    except Exception as exc:
        raise ConversionError(f"{src.name}: conversion failed: {exc}") from exc
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


class _Handover:
    """Instances written a few at a time (as a multi-channel conversion writes them) handed to
    the caller: as soon as they are finished when progressive, else all once published."""

    def __init__(
        self, staging: Path, out_dir: Path, on_instance: OnInstance | None, progressive: bool
    ) -> None:
        self.staging, self.out_dir = staging, out_dir
        self.on_instance = on_instance
        self.progressive = progressive
        self.made: dict[str, Instance] = {}
        if progressive:
            out_dir.mkdir(parents=True, exist_ok=True)

    def finished(self, instances: list[Instance]) -> None:
        if not self.progressive:
            self.made.update((i.path.name, i) for i in instances)
            return
        published = _publish(self.staging, self.out_dir, [i.path.name for i in instances])
        for instance, path in zip(instances, published, strict=True):
            self._hand_over(dataclasses.replace(instance, path=path))

    def done(self, names: list[str]) -> list[Path]:
        if self.progressive:
            return [self.out_dir / name for name in names]
        published = _publish(self.staging, self.out_dir, names)
        for path in published:
            self._hand_over(dataclasses.replace(self.made[path.name], path=path))
        return published

    def _hand_over(self, instance: Instance) -> None:
        if self.on_instance is not None:
            self.on_instance(instance)


def _staging(out_dir: Path, names: list[str]) -> Path:
    """A fresh folder beside ``out_dir`` for the instances being written; refuses to overwrite."""
    clashes = [n for n in names if (out_dir / n).exists()]
    if clashes:
        raise ConversionError(f"{out_dir}: already holds {', '.join(clashes)}; not overwriting")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".wsi-convert-", dir=out_dir.parent))


def _publish(staging: Path, out_dir: Path, names: list[str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    try:
        for name in names:
            target = out_dir / name
            if target.exists():
                raise ConversionError(f"{target}: appeared during conversion; not overwriting")
            os.rename(staging / name, target)
            done.append(target)
    except BaseException:
        for path in done:
            path.unlink(missing_ok=True)
        raise
    return done


class _Conversion:
    def __init__(
        self,
        slide: SlideInfo,
        headers: Headers,
        options: ConvertOptions,
        staging: Path,
        progress: Progress | None,
        thumbnail: tuple[int, int] | None = None,
    ) -> None:
        self.slide = slide
        self.thumbnail = thumbnail  # the largest size the THUMBNAIL may have
        self.options = options
        self.staging = staging
        self.progress = progress
        self.headers = headers
        self.codec = codec_for(options.codec, options.jpeg_mode)
        self.total = 0
        self.done = 0
        self._pool = None
        self._window = 2 * options.workers  # jobs in flight
        self._slots: memoryview | None = None  # shared with the workers, see run_job
        self._use_pool = False
        self._lock = threading.Lock()
        self._failed = threading.Event()
        self._local = threading.local()
        self._accesses: list[SlideAccess] = []
        self._kept: tuple[PlannedLevel, np.ndarray] | None = None  # see _whole_level
        self._shared: deque[Callable[[], None]] = deque()  # see run()
        self.out_dir = staging
        self.on_instance: OnInstance | None = None
        self._made: dict[str, Instance] = {}  # by file name, until handed over
        self.handover_order: list[str] = []  # names not handed over yet (progressive)
        self._mended: dict[str, int] = {}

    def __enter__(self) -> _Conversion:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for access in self._accesses:
            access.close()

    @property
    def access(self) -> SlideAccess:
        """This thread's own handles on the source (for work done in this process)."""
        access = getattr(self._local, "access", None)
        if access is None:
            access = self._local.access = SlideAccess(self.slide)
            with self._lock:
                self._accesses.append(access)
        return access

    def run(self, copies: list, encodes: list, extras: list) -> None:
        """Copy passthrough levels in a helper thread (I/O bound: preadv/writev release the GIL)
        while this thread encodes or feeds the encoding workers. The small generated levels (one
        task: each is made from the one before), label, overview and thumbnail are shared: the
        copying thread takes them after the copies, this one from the other end of the queue."""
        from concurrent.futures import ThreadPoolExecutor

        encode_frames = sum(level.frames for level, *_ in encodes)
        self._use_pool = self.options.workers > 1 and encode_frames >= _POOL_MIN_FRAMES
        if self._use_pool:
            # Fork the workers now, before the copying thread exists: a child forked while another
            # thread holds a lock (malloc, OpenSlide's, the import lock) can hang forever. The pool
            # forks lazily on its first task, so hand it a trivial one.
            self._workers().submit(int).result()
        small = [item for item in encodes if _small_generated(item[0])]
        encodes = [item for item in encodes if not _small_generated(item[0])]
        take_last = self._shared.pop
        if self.options.progressive:
            # Smallest first, both threads from the same end: the associated images, the
            # generated levels, then the source's levels up to level 0. Encoding jobs for worker
            # processes stay on this thread (the shared result slots are per thread).
            self._shared.extend(
                partial(self.write_associated, a, name, n) for a, (n, name) in extras
            )
            for level, number, name in [*reversed(small), *reversed(copies)]:
                self._shared.append(partial(self.write_level, level, name, number))
            encodes, take_last = encodes[::-1], self._shared.popleft
        else:
            self._shared.extend(partial(self.write_level, lv, name, n) for lv, n, name in copies)
            if small:
                self._shared.append(partial(self._encode_all, small))
            self._shared.extend(
                partial(self.write_associated, a, name, n) for a, (n, name) in extras
            )
        with ThreadPoolExecutor(1, thread_name_prefix="wsi-copy") as copier:
            copied = copier.submit(self._guarded, self._take_shared, self._shared.popleft)
            # If the copying thread failed first, its error (from result()) is the one to report.
            with contextlib.suppress(_Stopped):
                self._guarded(self._encode_all, encodes)
                self._guarded(self._take_shared, take_last)
            copied.result()

    def _guarded(self, work: Callable, *args) -> None:
        try:
            work(*args)
        except BaseException:
            self._failed.set()  # stops the other thread at its next frame batch
            raise

    def _encode_all(self, encodes: list) -> None:
        for level, number, name in encodes:
            self.write_level(level, name, number)

    @staticmethod
    def _take_shared(take: Callable[[], Callable[[], None]]) -> None:
        while True:
            try:
                task = take()
            except IndexError:
                return
            task()

    def _finished(self, name: str, instance: Instance) -> None:
        """An instance is written. A progressive conversion hands over, in its order (smallest
        first), every instance whose predecessors are all handed over: the two threads may
        finish them out of order, the caller sees them in order."""
        with self._lock:
            self._made[name] = instance
            if not self.options.progressive:
                return
            if self._failed.is_set():
                raise _Stopped("stopped: another part of the conversion failed")
            while self.handover_order and self.handover_order[0] in self._made:
                ready = self.handover_order.pop(0)
                target = self.out_dir / ready
                if target.exists():
                    raise ConversionError(f"{target}: appeared during conversion; not overwriting")
                os.rename(self.staging / ready, target)
                self._hand_over(ready)

    def hand_over(self, name: str) -> None:
        """Tell the caller about an instance now in the output folder."""
        with self._lock:
            self._hand_over(name)

    def _hand_over(self, name: str) -> None:
        instance = self._made.pop(name)
        if self.on_instance is not None:
            self.on_instance(dataclasses.replace(instance, path=self.out_dir / name))

    def _advance(self, frames: int) -> None:
        if self._failed.is_set():
            raise _Stopped("stopped: another part of the conversion failed")
        with self._lock:  # reported under the lock: two threads advance, callers see done rise
            self.done += frames
            if self.progress is not None:
                self.progress(self.done, self.total)

    # -- pyramid levels ------------------------------------------------------------------------

    def write_level(self, level: PlannedLevel, name: str, number: int) -> None:
        raw = level.passthrough
        if raw is not None:
            photometric, history = raw.photometric, [(raw.method, RATIO_PLACEHOLDER)] * raw.lossy
            transfer_syntax = raw.transfer_syntax
            estimate = int(raw.bytecounts.sum()) + level.frames * (len(raw.prefix) + 9)
        else:
            photometric, transfer_syntax = self.codec.photometric, self.codec.transfer_syntax
            history = self._encoded_history()
            estimate = level.frames * (level.tile_width * level.tile_height * 3 * 11 // 10 + 1024)
        # Encoding jobs go out before the header is asked for: the workers need not wait for it.
        if raw is None:
            batches = self._encoded_frames(level)
        elif raw.retiled:
            batches = self._retiled_frames(level)
        else:
            batches = self._raw_frames(level, raw, name)
        header = self.headers.header(
            transfer_syntax,
            kind="VOLUME",
            derived=level.generated,
            number=number,
            width=level.width,
            height=level.height,
            tile_width=level.tile_width,
            tile_height=level.tile_height,
            frames=level.frames,
            photometric=photometric,
            lossy_history=history,
            downsample=level.downsample,
        )
        path, large = self.staging / name, estimate >= FOUR_GIB
        writer = FrameWriter(path, header, level.frames, large=large)
        try:
            for batch in batches:
                writer.write_batch(batch)
            raw_bytes = level.frames * level.tile_width * level.tile_height * 3
            writer.close(compression_ratio(raw_bytes, writer.compressed_bytes))
        except BaseException:
            writer.abort()
            raise
        made = (RETILED if raw.retiled else COPIED) if raw else ENCODED
        self._finished(
            name,
            Instance(
                path=path,
                kind="VOLUME",
                width=level.width,
                height=level.height,
                frames=level.frames,
                made=GENERATED if level.generated else made,
                mended=self._mended.get(name, 0),
            ),
        )

    def _encoded_history(self) -> list[tuple[str, str]]:
        history = []
        if self.slide.source_compression and self.slide.source_compression[1]:
            method, ratio = self.slide.source_compression
            history.append((method, f"{ratio:.6g}"))
        if self.codec.lossy:
            history.append((self.codec.method, RATIO_PLACEHOLDER))
        return history

    def _retiled_frames(self, level: PlannedLevel) -> Iterator[list[tuple]]:
        """Frames cut from the source's JPEG stripes without decoding (wsi.sources.ndpi)."""
        from wsi.sources.ndpi import NdpiRetiler

        retiler = NdpiRetiler(self.slide.path)
        try:
            for row in retiler.rows(level.width, level.height):
                yield [(tile, b"", 0) for tile in row]
                self._advance(len(row))
        except (ConversionError, GeneratorExit):
            raise
        except Exception as exc:
            raise ConversionError(
                f"{self.slide.path.name}: cannot re-tile the {level.width}x{level.height} "
                f"level's JPEG stripes: {exc}"
            ) from exc
        finally:
            retiler.close()

    def _raw_frames(
        self, level: PlannedLevel, raw: Passthrough, name: str
    ) -> Iterator[list[tuple]]:
        """Source tiles as they are, in batches read with one pread where the tiles lie one after
        another in the file (they usually do); missing or broken tiles are decoded and
        re-encoded in the level's colour model."""
        fd = os.open(self.slide.path, os.O_RDONLY)
        try:
            offsets, counts = raw.offsets.tolist(), raw.bytecounts.tolist()
            intact = JpegTileCheck() if raw.codec == "jpeg" else j2k_tile_complete
            runs = list(_runs(offsets, counts))
            # One buffer for every batch (the consumer writes a batch before asking for the
            # next): a fresh one per read would page-fault on every 4 KiB.
            spans = [offsets[last - 1] + counts[last - 1] - offsets[first] for first, last in runs]
            buffer = memoryview(bytearray(max(spans, default=0)))
            for (first, last), span in zip(runs, spans, strict=True):
                start = offsets[first]
                data = buffer[: os.preadv(fd, [buffer[:span]], start)]  # short if truncated
                batch = []
                for i in range(first, last):
                    tile = data[offsets[i] - start : offsets[i] - start + counts[i]]
                    if intact(tile):
                        batch.append((tile, raw.prefix, raw.strip))
                    else:
                        batch.append((self._mend(level, raw, i), b"", 0))
                        self._mended[name] = self._mended.get(name, 0) + 1
                yield batch
                self._advance(last - first)
        finally:
            os.close(fd)

    def _mend(self, level: PlannedLevel, raw: Passthrough, index: int) -> bytes:
        """Re-encode one unusable source tile from decoded pixels, in the level's colour model."""
        if raw.codec != "jpeg":
            raise ConversionError(
                f"{self.slide.path.name}: JPEG 2000 tile {index} of the {level.width}x"
                f"{level.height} level is empty or corrupt"
            )
        ty, tx = divmod(index, level.tiles_across)
        job = self._job(level, ty, tx, tx + 1, "jpeg-rgb" if raw.rgb else "jpeg-ycbcr420")
        try:
            return encode_tiles(self.access, job)[0]
        except Exception as exc:
            raise ConversionError(
                f"{self.slide.path.name}: tile {index} of the {level.width}x{level.height} level "
                f"is empty or corrupt and could not be decoded either: {exc}"
            ) from exc

    def _job(self, level: PlannedLevel, ty: int, tx0: int, tx1: int, codec: str) -> TileJob:
        return TileJob(
            width=level.width,
            height=level.height,
            tile_width=level.tile_width,
            tile_height=level.tile_height,
            read_level=level.read_level,
            scale=self._scale(level),
            codec=codec,
            quality=self.options.jpeg_quality,
            ty=ty,
            tx0=tx0,
            tx1=tx1,
        )

    def _scale(self, level: PlannedLevel) -> float:
        return level.downsample / self.slide.levels[level.read_level].downsample

    def _encoded_frames(self, level: PlannedLevel) -> Iterator[list[tuple]]:
        """Encoded frames in batches; jobs for worker processes are submitted already."""
        if _small_generated(level):
            return self._frames_of(self._whole_level(level), level)
        per_job = self._tiles_per_job(level)
        jobs = [
            self._job(level, ty, tx0, min(tx0 + per_job, level.tiles_across), self.codec.name)
            for ty in range(level.tiles_down)
            for tx0 in range(0, level.tiles_across, per_job)
        ]
        return self._collected(level, self._run(jobs))

    def _frames_of(self, pixels: np.ndarray, level: PlannedLevel) -> Iterator[list[tuple]]:
        for row in tile_rows(pixels, level.tile_width, level.tile_height):
            yield [
                (encode(tile, self.codec.name, self.options.jpeg_quality), b"", 0) for tile in row
            ]
            self._advance(len(row))

    def _collected(
        self, level: PlannedLevel, results: Iterator[list[bytes]]
    ) -> Iterator[list[tuple]]:
        while True:
            try:
                tiles = next(results, None)
            except ConversionError:
                raise
            except Exception as exc:
                raise ConversionError(
                    f"{self.slide.path.name}: cannot decode the source image for the "
                    f"{level.width}x{level.height} level: {exc}"
                ) from exc
            if tiles is None:
                return
            yield [(tile, b"", 0) for tile in tiles]
            self._advance(len(tiles))

    def _tiles_per_job(self, level: PlannedLevel) -> int:
        tile_pixels = level.tile_width * level.tile_height * self._scale(level) ** 2
        return max(1, int(_JOB_PIXELS // tile_pixels))

    def _whole_level(self, level: PlannedLevel) -> np.ndarray:
        """A small generated level's pixels, made from the generated level before it when that
        one is in memory (instead of decoding the source level again), else from the source."""
        kept = self._kept
        factor = round(level.downsample / kept[0].downsample) if kept else 0
        if kept and factor > 1 and level.downsample == kept[0].downsample * factor:
            pixels = shrink(kept[1], factor, level.width, level.height)
        else:
            size, scale = (level.width, level.height), self._scale(level)
            pixels = np.empty((level.height, level.width, 3), dtype=np.uint8)
            # Piece by piece, as the worker jobs do, so the source pixels decoded at once stay
            # bounded however far below the source level this one lies.
            w = level.tile_width * self._tiles_per_job(level)
            for y in range(0, level.height, level.tile_height):
                h = min(level.tile_height, level.height - y)
                for x in range(0, level.width, w):
                    piece = read_resampled(self.access, level.read_level, scale, size, x, y, w, h)
                    pixels[y : y + h, x : x + w] = piece[:, : level.width - x]
        self._kept = (level, pixels)
        return pixels

    def _run(self, jobs: list[TileJob]) -> Iterator[list[bytes]]:
        """Encode jobs in worker processes, results in order, a bounded number in flight."""
        if not self._use_pool or len(jobs) == 1:
            return (encode_tiles(self.access, job) for job in jobs)
        pool = self._workers()
        return _ordered(pool, jobs, self._window, self._slots)

    def _workers(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork is fastest (workers inherit the imported modules) but only safe while this
            # process runs a single thread, as the command line does; inside a threaded host
            # (the hub's executors) a fork server, started clean, forks the workers instead.
            shared = None
            if threading.active_count() == 1:
                context = multiprocessing.get_context("fork")
                import imagecodecs  # noqa: F401 - imported once here, inherited by every worker
                import PIL.Image  # noqa: F401

                # Anonymous and shared: the forked workers inherit it (a fork server's could not).
                shared = mmap.mmap(-1, (self._window + 1) * SLOT_BYTES)
                self._slots = memoryview(shared)
            else:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["wsi.encode"])
            self._pool = ProcessPoolExecutor(
                max_workers=self.options.workers,
                mp_context=context,
                initializer=init_worker,
                initargs=(self.slide, shared),
            )
        return self._pool

    # -- label, overview, thumbnail ------------------------------------------------------------

    def write_associated(self, image: Associated, name: str, number: int) -> None:
        from wsi.sources.openslide_reader import OpenSlideRegionReader

        reader = self.access.reader
        assert isinstance(reader, OpenSlideRegionReader)
        try:
            pixels = reader.associated(image.name)
        except Exception as exc:
            raise ConversionError(
                f"{self.slide.path.name}: its {image.kind.lower()} image is unreadable: {exc}"
            ) from exc
        original = pixels
        if image.kind == "THUMBNAIL" and self.thumbnail is not None:
            pixels = _fitted(pixels, self.thumbnail)
        resampled = image.kind == "THUMBNAIL" and pixels is not original
        instance = write_photo(self, image.kind, pixels, name, number, resampled)
        self._advance(1)
        self._finished(name, instance)


def write_photo(
    job: PhotoJob, kind: str, pixels: np.ndarray, name: str, number: int, resampled: bool = False
) -> Instance:
    """One JPEG frame of an associated image (label, overview, thumbnail) into ``job.staging``."""
    height, width = pixels.shape[:2]
    codec = codec_for("jpeg", job.options.jpeg_mode)
    frame = encode(pixels, codec.name, job.options.jpeg_quality)
    header = job.headers.header(
        JPEG_BASELINE,
        kind=kind,
        derived=kind == "THUMBNAIL",
        number=number,
        width=width,
        height=height,
        tile_width=width,
        tile_height=height,
        frames=1,
        photometric=codec.photometric,
        lossy_history=[(codec.method, RATIO_PLACEHOLDER)],
        downsample=job.slide.width / width,
    )
    writer = FrameWriter(job.staging / name, header, 1, large=False)
    writer.write_batch([(frame, b"", 0)])
    writer.close(compression_ratio(width * height * 3, writer.compressed_bytes))
    made = GENERATED if resampled else ENCODED
    return Instance(job.staging / name, kind, width, height, 1, made)


class _Stopped(ConversionError):
    """Raised in one thread of a conversion because the other one failed."""


def _fitted(pixels: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    height, width = pixels.shape[:2]
    size = fit(width, height, box)
    if size == (width, height):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def _small_generated(level: PlannedLevel) -> bool:
    return level.generated and level.width * level.height <= _WHOLE_LEVEL_PIXELS


def _ordered(
    pool, jobs: list[TileJob], window: int, slots: memoryview | None
) -> Iterator[list[bytes] | list[memoryview]]:
    """Results in order, at most ``window`` jobs in flight; the first ones are submitted now.
    With ``slots`` (window + 1 of them), job i returns its frames in slot i % (window + 1): the
    one being consumed plus those in flight."""
    waiting = enumerate(jobs)
    pending: deque = deque()

    def submit(index: int, job: TileJob) -> None:
        slot = index % (window + 1) if slots is not None else None
        pending.append((pool.submit(run_job, job, slot), slot))

    for index, job in itertools.islice(waiting, window):
        submit(index, job)
    return _in_order(pending, waiting, submit, slots)


def _in_order(
    pending: deque, waiting: Iterator, submit: Callable, slots: memoryview | None
) -> Iterator[list[bytes] | list[memoryview]]:
    try:
        while pending:
            future, slot = pending.popleft()
            result = future.result()
            following = next(waiting, None)
            if following is not None:
                submit(*following)
            if isinstance(result, tuple):  # lengths of frames left in the shared slot
                assert slots is not None and slot is not None
                pos, frames = slot * SLOT_BYTES, []
                for length in result:
                    frames.append(slots[pos : pos + length])
                    pos += length
                result = frames
            yield result
    finally:
        for future, _ in pending:
            future.cancel()


_BATCH_FRAMES = 200  # frames per writev (4 buffers each, under IOV_MAX = 1024)
_BATCH_BYTES = 8 << 20


def _runs(offsets: list[int], counts: list[int]) -> Iterator[tuple[int, int]]:
    """[first, last) index ranges of tiles stored back to back, bounded in count and bytes."""
    first, n = 0, len(offsets)
    while first < n:
        last = first + 1
        size = counts[first]
        while (
            last < n
            and last - first < _BATCH_FRAMES
            and size < _BATCH_BYTES
            and counts[last]
            and counts[last - 1]
            and offsets[last] == offsets[last - 1] + counts[last - 1]
        ):
            size += counts[last]
            last += 1
        yield first, last
        first = last
