"""Real aiortc peers for the telehealth tests: a clinic playing a real ultrasound cine and a
specialist, both talking to the hub over loopback through the signalling WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pydicom
from aiohttp import web
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from hubtest import free_port
from pydicom.data import get_testdata_file

from hub.app import build_app
from hub.app_keys import ARCHIVE_KEY
from hub.archive import Archive
from hub.config import Settings, sections
from hub.security.accounts import create_user, issue_token
from telehealth.ice import rtc_configuration

CINE = "color3d_jpeg_baseline.dcm"
FPS = 30
VIDEO_CLOCK = 90000


@cache
def cine() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file(CINE))


@cache
def cine_frames() -> np.ndarray:
    """The 120 RGB frames (480x640x3) of the real ultrasound cine."""
    return cine().pixel_array


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


class CineTrack(MediaStreamTrack):
    """Plays the cine in a loop at 30 fps, frame i carrying pts 3000*i at 90 kHz."""

    kind = "video"

    def __init__(self, frames: np.ndarray, fps: int = FPS) -> None:
        super().__init__()
        self._frames = [VideoFrame.from_ndarray(f, format="rgb24") for f in frames]
        self._fps = fps
        self._start: float | None = None
        self.sent = 0

    async def recv(self) -> VideoFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self.sent / self._fps
        await asyncio.sleep(max(0.0, due - loop.time()))
        frame = self._frames[self.sent % len(self._frames)]
        frame.pts = self.sent * VIDEO_CLOCK // self._fps
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        self.sent += 1
        return frame


@dataclass
class Peer:
    """One side (clinic or specialist) as a browser would be: WebSocket + RTCPeerConnection."""

    base_url: str
    session_id: str
    token: str
    role: str
    headers: dict[str, str]
    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(rtc_configuration()))
    messages: asyncio.Queue = field(default_factory=asyncio.Queue)
    signals: asyncio.Queue = field(default_factory=asyncio.Queue)
    video_frames: list[VideoFrame] = field(default_factory=list)
    video_count: int = 0
    video_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    audio_frames: int = 0
    audio_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    http: aiohttp.ClientSession | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)

    async def connect(self, *tracks: MediaStreamTrack, receive_video: bool = False) -> None:
        for track in tracks:
            self.pc.addTrack(track)
        if receive_video:
            self.pc.addTransceiver("video", direction="recvonly")
        self.channel = self.pc.createDataChannel("guidance")
        self.channel.on("message", lambda m: self.messages.put_nowait(json.loads(m)))
        self.pc.on("track", self._on_track)
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        self.http = aiohttp.ClientSession(headers=self.headers)
        url = f"{self.base_url}/api/telehealth/sessions/{self.session_id}/signal"
        self.ws = await self.http.ws_connect(url, params={"token": self.token})
        self.tasks.append(asyncio.create_task(self._read_signals()))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.ws.send_json({"type": "offer", "sdp": self.pc.localDescription.sdp})
        answer = await self.next_signal("answer")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await asyncio.wait_for(opened.wait(), 60)

    async def next_signal(self, kind: str, limit: float = 60) -> dict[str, Any]:
        async with asyncio.timeout(limit):
            while True:
                signal = await self.signals.get()
                if signal.get("type") == kind:
                    return signal

    async def next_message(self, predicate, limit: float = 60) -> dict[str, Any]:
        async with asyncio.timeout(limit):
            while True:
                message = await self.messages.get()
                if predicate(message):
                    return message

    def send(self, message: dict[str, Any]) -> None:
        self.channel.send(json.dumps(message))

    async def wait_video(self, frames: int, limit: float = 60) -> None:
        async with asyncio.timeout(limit):
            while self.video_count < frames:
                self.video_arrived.clear()
                await self.video_arrived.wait()

    async def wait_audio(self, frames: int, limit: float = 60) -> None:
        async with asyncio.timeout(limit):
            while self.audio_frames < frames:
                self.audio_arrived.clear()
                await self.audio_arrived.wait()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.tasks.append(asyncio.create_task(self._read_track(track)))

    async def _read_track(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.video_frames.append(frame)
                    self.video_count += 1
                    self.video_arrived.set()
                    del self.video_frames[:-5]  # keep the newest few only
                else:
                    self.audio_frames += 1
                    self.audio_arrived.set()

    async def _read_signals(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.signals.put_nowait(json.loads(msg.data))


@dataclass
class Hub:
    url: str
    archive: Archive
    app: web.Application
    headers: dict[str, dict[str, str]]  # role -> Authorization header of a user with it

    def peer(self, session: dict[str, Any], role: str) -> Peer:
        token = session["clinic_token" if role == "clinic" else "specialist_token"]
        return Peer(self.url, session["id"], token, role, self.headers[role])


@contextlib.asynccontextmanager
async def running_hub(
    data_dir: Path, extra: dict[str, Any] | None = None, **telehealth: Any
) -> AsyncIterator[Hub]:
    """The whole hub (hub.app.build_app) on a free loopback port, ICE on loopback only."""
    settings = Settings(
        data_dir=data_dir,
        port=free_port(),
        **sections(**(extra or {}), telehealth={"ice_candidates": "loopback", **telehealth}),
    )
    app = await build_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    try:
        archive = app[ARCHIVE_KEY]
        headers = {role: await user_headers(archive, role) for role in ("clinic", "specialist")}
        yield Hub(f"http://127.0.0.1:{settings.port}", archive, app, headers)
    finally:
        await runner.cleanup()


WORKLIST_REQUEST = {
    "patient": {
        "name": "Kowalska^Zofia",
        "id": "PAED-0042",
        "birth_date": "20260301",
        "sex": "F",
        "age": "008M",
        "weight_kg": 7.9,
        "size_m": 0.69,
    },
    "accession": "ACC-TH-0001",
    "study_uid": "1.2.826.0.1.3680043.8.498.1001",
    "requested_procedure_id": "RP-77",
    "scheduled_procedure_step_id": "SPS-77-1",
    "referring_physician": "Nowak^Jan",
    "protocol_code": {"value": "US-HIP", "scheme": "99TESSERA", "meaning": "Infant hip US"},
    # the cine's own calibration (its SequenceOfUltrasoundRegions)
    "calibration": {
        "region": [84, 31, 595, 414],
        "delta_x_cm": 0.05104970559477806,
        "delta_y_cm": 0.05104970559477806,
    },
}


async def user_headers(archive: Archive, role: str) -> dict[str, str]:
    """A user with this role (clinic or specialist) and its API token, as request headers."""
    await create_user(archive.engine, f"{role}-user", role, None)
    _, secret = await issue_token(archive.engine, f"{role}-user", label="telehealth tests")
    return {"Authorization": f"Bearer {secret}"}


async def start_session(http: aiohttp.ClientSession, hub: Hub) -> dict[str, Any]:
    url = f"{hub.url}/api/telehealth/sessions"
    async with http.post(url, json=WORKLIST_REQUEST, headers=hub.headers["clinic"]) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def join_session(http: aiohttp.ClientSession, hub: Hub, code: str) -> dict[str, Any]:
    url = f"{hub.url}/api/telehealth/join"
    async with http.post(url, json={"code": code}, headers=hub.headers["specialist"]) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def stored_dataset(archive: Archive, event: dict[str, Any], **read: Any) -> pydicom.Dataset:
    """The stored instance a capture event names, read from the archive's blob store."""
    refs = await archive.instances(event["study_uid"], sop_uid=event["sop_instance_uid"])
    return pydicom.dcmread(archive.store.path(refs[0].sha256), **read)


def audio_track() -> AudioStreamTrack:
    return AudioStreamTrack()  # silence, paced like a microphone
