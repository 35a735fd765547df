"""Outbound tracks of the hub: a stable track per receiving peer whose source can change."""

from __future__ import annotations

import asyncio

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame


class LiveTrack(MediaStreamTrack):
    """Outbound track whose source can be replaced (peer reconnect) without renegotiation.

    A new source restarts its timestamps, which the encoder (libvpx) refuses to see go back,
    so after a switch frames are re-stamped to continue the timeline. Frames are shared with
    the capturer and other subscribers, so a re-stamped frame is a copy (one memcpy, no
    encode); before any switch frames pass through untouched.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._changed = asyncio.Event()
        self._offset = 0
        self._last_pts: int | None = None
        self._step = 0
        # Frames numbered at the hub's input (capture.SequencedTrack) that this track never
        # sent: the encoder was still busy when newer ones arrived (latest frame wins).
        self.skipped = 0
        self._last_seq: int | None = None

    def set_source(self, source: MediaStreamTrack | None) -> None:
        if self._source is not None:
            self._source.stop()
        self._source = source
        self._last_seq = None  # a new source numbers its frames from 1
        self._changed.set()

    async def recv(self) -> VideoFrame | AudioFrame:
        while self.readyState == "live":
            source = self._source
            if source is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                return self._continue_timeline(await source.recv())
            except MediaStreamError:
                if self._source is source:
                    self._source = None
        raise MediaStreamError

    def stop(self) -> None:
        self.set_source(None)
        super().stop()

    def _continue_timeline(self, frame: VideoFrame | AudioFrame) -> VideoFrame | AudioFrame:
        if isinstance(frame.opaque, int):
            if self._last_seq is not None and frame.opaque > self._last_seq:
                self.skipped += frame.opaque - self._last_seq - 1
            self._last_seq = frame.opaque
        if frame.pts is None:
            return frame
        pts = frame.pts + self._offset
        if self._last_pts is not None:
            if pts <= self._last_pts:  # a new source: carry on one step after the last frame
                self._offset += self._last_pts + max(self._step, 1) - pts
                pts = frame.pts + self._offset
            else:
                self._step = pts - self._last_pts
        self._last_pts = pts
        return frame if self._offset == 0 else _restamped(frame, pts)


def _restamped(frame: VideoFrame | AudioFrame, pts: int) -> VideoFrame | AudioFrame:
    if isinstance(frame, VideoFrame):
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        copy = VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
    else:
        copy = AudioFrame.from_ndarray(
            frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name
        )
        copy.sample_rate = frame.sample_rate
    copy.pts = pts
    copy.time_base = frame.time_base
    return copy
