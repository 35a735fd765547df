"""Capture from the clinic's live video: stills and clips, concurrent with guidance.

The capturer is fed by a tap where the hub's relay reads the clinic's track
(``SequencedTrack``): each frame is handed over without waiting, and during a clip goes into a
bounded queue that one worker drains, encoding (JPEG or RLE) in an executor. So the live path to
the specialist never waits for capture, and a full queue drops a frame and counts it.

Why a tap and not another ``MediaRelay.subscribe``: a ``buffered=False`` subscriber keeps only
the newest frame and loses one whenever two frames reach the relay in one loop turn (2 of 60
in a loaded test run), while ``buffered=True`` has an unbounded queue (aiortc#554).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from telehealth.us_image import Codec, EncodedFrame, encode_frame

log = logging.getLogger(__name__)

FrameTap = Callable[["SequencedTrack", VideoFrame | None], None]


class CaptureError(RuntimeError):
    """A capture command that cannot be carried out now (no video, clip already running...)."""


class SequencedTrack(MediaStreamTrack):
    """Passes a remote video track through, numbering its frames (``frame.opaque``) and
    handing each to the taps; ``None`` tells the taps the track ended."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.source = source
        self.count = 0
        self.taps: list[FrameTap] = []

    async def recv(self) -> VideoFrame:
        try:
            frame = await self.source.recv()
        except MediaStreamError:
            self._tell(None)
            raise
        self.count += 1
        frame.opaque = self.count
        self._tell(frame)
        return frame

    def _tell(self, frame: VideoFrame | None) -> None:
        for tap in list(self.taps):  # a tap may remove itself
            tap(self, frame)

    def stop(self) -> None:
        super().stop()
        self.source.stop()


@dataclass
class ClipOutcome:
    frames: list[EncodedFrame]
    dropped: int  # frames that reached the hub during the clip but are not in it
    reason: str  # "stopped", "duration", "limit", "source-ended", "closed"


@dataclass
class _Clip:
    codec: Codec
    max_seconds: float
    queue: asyncio.Queue[VideoFrame | None]
    frames: list[EncodedFrame] = field(default_factory=list)
    queue_drops: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_seconds: float | None = None
    reason: str = "stopped"
    worker: asyncio.Task | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    result: Any = None

    def seen(self) -> int:
        if self.first_seq is None or self.last_seq is None:
            return 0
        return self.last_seq - self.first_seq + 1


class Capturer:
    def __init__(
        self,
        executor: Executor | None,
        *,
        jpeg_quality: int,
        still_buffer_frames: int,
        encode_queue_frames: int,
        max_clip_seconds: float,
        on_clip_ended: Callable[[ClipOutcome, Codec], Awaitable[Any]],
    ) -> None:
        self._executor = executor
        self._quality = jpeg_quality
        self._queue_size = encode_queue_frames
        self._max_clip_seconds = max_clip_seconds
        self._on_clip_ended = on_clip_ended
        self._latest: deque[VideoFrame] = deque(maxlen=still_buffer_frames)
        self._frozen: VideoFrame | None = None
        self._source: SequencedTrack | None = None
        # The image size captures keep to: declared by the clinic, else the connection's first.
        self._declared: tuple[int, int] | None = None
        self._size: tuple[int, int] | None = None
        self._clip: _Clip | None = None

    @property
    def recording(self) -> bool:
        return self._clip is not None

    @property
    def has_video(self) -> bool:
        return self._source is not None

    def set_source(self, track: SequencedTrack) -> None:
        """Capture from this clinic track from now on; a previous source is dropped."""
        if self._clip is not None:  # a clip never spans two connections (timing restarts)
            self._end_clip(self._clip, "source-changed")
        if self._source is not None:
            self._source.taps.remove(self._on_frame)
        self._source = track
        self._size = self._declared
        self._latest.clear()
        track.taps.append(self._on_frame)

    def declare_size(self, width: int, height: int) -> None:
        """The clinic's native image size; frames the encoder sent smaller are scaled back."""
        self._declared = (width, height)
        self._size = self._declared

    def freeze(self, frozen: bool) -> None:
        self._frozen = (self._latest[-1] if self._latest else None) if frozen else None

    async def still(self, codec: Codec) -> EncodedFrame:
        frame = self._frozen or (self._latest[-1] if self._latest else None)
        if frame is None:
            raise CaptureError("no video from the clinic yet")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, encode_frame, frame, codec, self._quality, self._size
        )

    def start_clip(self, codec: Codec, seconds: float | None = None) -> None:
        if self._clip is not None:
            raise CaptureError("a clip is already being recorded")
        if self._source is None:
            raise CaptureError("no video from the clinic yet")
        limit = min(seconds, self._max_clip_seconds) if seconds else self._max_clip_seconds
        # One slot more than the frame budget, so the end marker always fits.
        clip = _Clip(codec, limit, asyncio.Queue(maxsize=self._queue_size + 1))
        if seconds:
            clip.reason = "duration"
        clip.worker = asyncio.create_task(self._encode(clip))
        self._clip = clip

    async def stop_clip(self, reason: str = "stopped") -> Any:
        """End the running clip; returns what ``on_clip_ended`` made of its frames."""
        clip = self._clip
        if clip is None:
            raise CaptureError("no clip is being recorded")
        self._end_clip(clip, reason)
        await clip.done.wait()
        return clip.result

    async def close(self) -> None:
        if self._clip is not None:
            await self.stop_clip("closed")
        if self._source is not None:
            self._source.taps.remove(self._on_frame)
            self._source = None
        self._latest.clear()
        self._frozen = None

    def _on_frame(self, track: SequencedTrack, frame: VideoFrame | None) -> None:
        if track is not self._source:
            return
        if frame is None:
            self._source.taps.remove(self._on_frame)
            self._source = None
            self._latest.clear()
            if self._clip is not None:
                self._end_clip(self._clip, "source-ended")
            return
        if self._size is None:
            self._size = (frame.width, frame.height)
        self._latest.append(frame)
        if self._clip is not None:
            self._offer(self._clip, frame)

    def _offer(self, clip: _Clip, frame: VideoFrame) -> None:
        seconds = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
        if clip.first_seconds is None:
            clip.first_seconds = seconds
        elif seconds - clip.first_seconds >= clip.max_seconds - 1e-6:
            self._end_clip(clip, clip.reason if clip.reason == "duration" else "limit")
            return
        if isinstance(frame.opaque, int):
            clip.first_seq = frame.opaque if clip.first_seq is None else clip.first_seq
            clip.last_seq = frame.opaque
        if clip.queue.qsize() >= self._queue_size:
            clip.queue_drops += 1
        else:
            clip.queue.put_nowait(frame)

    def _end_clip(self, clip: _Clip, reason: str) -> None:
        if self._clip is not clip:
            return
        self._clip = None
        clip.reason = reason
        clip.queue.put_nowait(None)

    async def _encode(self, clip: _Clip) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (frame := await clip.queue.get()) is not None:
                encoded = await loop.run_in_executor(
                    self._executor, encode_frame, frame, clip.codec, self._quality, self._size
                )
                clip.frames.append(encoded)
            dropped = max(clip.seen() - len(clip.frames), clip.queue_drops)
            outcome = ClipOutcome(clip.frames, dropped, clip.reason)
            clip.result = await self._on_clip_ended(outcome, clip.codec)
        except Exception:
            log.exception("clip capture failed")
        finally:
            clip.done.set()
