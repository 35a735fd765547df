"""One guidance session: the hub's peer connections, media relay, data channels and captures.

Media: the clinic sends video (+ audio) and receives the specialist's audio; the specialist
sends audio and receives the clinic's video and audio. The hub relays decoded frames with
aiortc's MediaRelay (``buffered=False`` everywhere: a subscriber only ever holds the newest
frame, so no queue can grow) and every incoming track is read for as long as it lives: a drain
subscription starts the relay's reader on arrival (aiortc#554). The clinic's video passes a
``SequencedTrack`` tap on the way in, which feeds the capturer. Outbound tracks are
``LiveTrack``s whose source is switched when a peer reconnects, so the other side keeps its
connection. The hub's video receivers complete frames at the RTP marker (``jitter.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from aiortc import RTCDataChannel, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from pydicom import Dataset
from pydicom.uid import generate_uid

from hub.config import TelehealthSettings
from telehealth.capture import CaptureError, Capturer, ClipOutcome, SequencedTrack
from telehealth.ice import has_relay_candidate, rtc_configuration
from telehealth.jitter import use_marker_completion
from telehealth.source_capture import source_frame
from telehealth.tracks import LiveTrack
from telehealth.us_image import (
    Calibration,
    CaptureContext,
    Codec,
    EncodedFrame,
    build_instance,
)

log = logging.getLogger(__name__)

Role = Literal["clinic", "specialist"]
ROLES: tuple[Role, ...] = ("clinic", "specialist")
# What each side may send to the hub as media, and which data-channel messages it may send.
MEDIA_ALLOWED: dict[Role, set[str]] = {"clinic": {"video", "audio"}, "specialist": {"audio"}}
MESSAGES_ALLOWED: dict[Role, set[str]] = {
    "clinic": {"freeze", "unfreeze", "capture", "source"},
    "specialist": {"pointer", "arrow", "clear", "freeze", "unfreeze", "capture"},
}
ANNOTATIONS = {"pointer", "arrow", "clear"}
MAX_MESSAGE_BYTES = 4096
MAX_PENDING_MESSAGES = 64  # data-channel commands being handled at once, per peer

# Stores a finished capture (Part-10 bytes) for the named actor; returns a JSON-able summary.
StoreFn = Callable[[bytes, str], Awaitable[dict[str, Any]]]


class MessageError(ValueError):
    """A data-channel or REST command that is malformed or not allowed for the sender."""


@dataclass
class Peer:
    role: Role
    pc: RTCPeerConnection
    actor: str
    may_capture: bool = True  # the caller's own permission (a token may be scoped narrower)
    channel: RTCDataChannel | None = None
    outbound: dict[str, LiveTrack] = field(default_factory=dict)  # kind -> track
    tasks: set[asyncio.Task] = field(default_factory=set)  # track readers, cancelled on close
    commands: set[asyncio.Task] = field(default_factory=set)  # run to the end (a capture)

    def send(self, message: dict[str, Any]) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(message))

    async def close(self) -> None:
        for track in self.outbound.values():
            track.stop()
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


class Session:
    def __init__(
        self,
        attributes: Dataset,
        settings: TelehealthSettings,
        store: StoreFn,
        *,
        calibration: Calibration | None = None,
        executor: Any = None,
    ) -> None:
        self.id = secrets.token_urlsafe(12)
        self.invite_code = secrets.token_urlsafe(9)
        self.tokens: dict[Role, str] = {role: secrets.token_urlsafe(24) for role in ROLES}
        self.attributes = attributes
        self.calibration = calibration
        self.settings = settings
        self.created = datetime.now()
        self.series_uid = generate_uid()
        self.frozen = False
        self.captures: list[dict[str, Any]] = []
        self.peers: dict[Role, Peer] = {}
        self.listeners: set[Callable[[dict[str, Any]], None]] = set()
        self.last_active = asyncio.get_running_loop().time()
        self._store = store
        self._relay = MediaRelay()
        self._sources: dict[tuple[Role, str], MediaStreamTrack] = {}
        self._instance_number = 0
        # Device stills by the page's capture id: a retried upload gets the first one's result.
        self._source_stills: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._stream_codec = ""
        self._recording_actor = ""
        self._closed = False
        self.capturer = Capturer(
            executor,
            jpeg_quality=settings.jpeg_quality,
            still_buffer_frames=settings.still_buffer_frames,
            encode_queue_frames=settings.encode_queue_frames,
            max_clip_seconds=settings.max_clip_seconds,
            on_clip_ended=self._clip_ended,
        )
        self._executor = executor

    # --- identity -------------------------------------------------------------------------

    def role_for(self, token: str | None) -> Role | None:
        for role, expected in self.tokens.items():
            if token and secrets.compare_digest(token, expected):
                return role
        return None

    def summary(self) -> dict[str, Any]:
        a = self.attributes
        return {
            "id": self.id,
            "patient": {
                "name": str(a.get("PatientName", "")),
                "id": a.get("PatientID", ""),
                "age": a.get("PatientAge", ""),
                "weight_kg": str(a.get("PatientWeight", "")),
                "size_m": str(a.get("PatientSize", "")),
            },
            "accession": a.get("AccessionNumber", ""),
            "study_uid": a.get("StudyInstanceUID", ""),
            "connected": {role: role in self.peers for role in ROLES},
            "frozen": self.frozen,
            "recording": self.capturer.recording,
            "captures": self.captures,
            "live_frames_skipped": self.frames_skipped(),
        }

    def frames_skipped(self) -> int:
        """Clinic video frames the relay did not send on to the specialist (latest wins)."""
        specialist = self.peers.get("specialist")
        video = specialist.outbound.get("video") if specialist else None
        return video.skipped if video else 0

    # --- signalling -----------------------------------------------------------------------

    async def accept_offer(self, role: Role, sdp: str, actor: str, may_capture: bool = True) -> str:
        """A (re)connecting side sends a complete offer; the hub answers with a fresh peer."""
        if self._closed:
            raise MessageError("the session has ended")
        if old := self.peers.pop(role, None):
            await old.close()
        pc = RTCPeerConnection(rtc_configuration(self.settings, f"{self.id}.hub-{role}"))
        peer = Peer(role, pc, actor, may_capture)
        self.peers[role] = peer
        pc.on("track", lambda track: self._on_track(peer, track))
        pc.on("datachannel", lambda channel: self._on_channel(peer, channel))
        pc.on("connectionstatechange", lambda: self._on_state(peer))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            self._add_outbound(peer)
            await pc.setLocalDescription(await pc.createAnswer())
            if self.settings.relay_only and not has_relay_candidate(pc.localDescription.sdp):
                raise MessageError(
                    "the hub could not reach the relay (TURN) server; its credentials may"
                    " be wrong or the server down"
                )
        except Exception:
            if self.peers.get(role) is peer:
                del self.peers[role]
            await peer.close()
            raise
        self._touch()
        self._notify({"type": "peer", "role": role, "state": "joining"})
        return pc.localDescription.sdp

    async def leave(self, role: Role) -> None:
        if peer := self.peers.pop(role, None):
            await peer.close()
            for key in [k for k in self._sources if k[0] == role]:
                self._sources.pop(key).stop()
            self._notify({"type": "peer", "role": role, "state": "left"})
        self._touch()

    async def close(self) -> None:
        """End the session: a running clip is stored first, then the connections close."""
        if self._closed:
            return
        self._closed = True
        await self.capturer.close()
        for role in list(self.peers):
            await self.leave(role)
        for source in self._sources.values():
            source.stop()
        self._notify({"type": "session", "state": "ended"})

    def _add_outbound(self, peer: Peer) -> None:
        wanted = {"clinic": ("audio",), "specialist": ("video", "audio")}[peer.role]
        for transceiver in peer.pc.getTransceivers():
            kind = transceiver.kind
            # Only answer with media on an m-line the peer offered to receive on.
            if kind not in wanted or kind in peer.outbound:
                continue
            if transceiver._offerDirection not in ("sendrecv", "sendonly"):
                continue
            track = LiveTrack(kind)
            peer.pc.addTrack(track)
            peer.outbound[kind] = track
            source_role: Role = "clinic" if peer.role == "specialist" else "specialist"
            if source := self._sources.get((source_role, kind)):
                track.set_source(self._relay.subscribe(source, buffered=False))

    def _on_track(self, peer: Peer, track: MediaStreamTrack) -> None:
        if self.peers.get(peer.role) is not peer:
            self._drain(peer, track)
            return
        if track.kind not in MEDIA_ALLOWED[peer.role]:
            log.info(
                "%s sent %s, which it may not; reading and discarding it", peer.role, track.kind
            )
            self._drain(peer, track)
            return
        if track.kind == "video":
            receiver = _receiver_of(peer.pc, track)
            if self.settings.marker_completion and receiver is not None:
                use_marker_completion(receiver)
            track = SequencedTrack(track)
            self._stream_codec = _video_codec(peer.pc)
            self.capturer.set_source(track)
        # The relay reads the source from its first subscriber on, for as long as it lives.
        self._drain(peer, self._relay.subscribe(track, buffered=False))
        if old := self._sources.get((peer.role, track.kind)):
            old.stop()
        self._sources[(peer.role, track.kind)] = track
        for other in self.peers.values():
            if other is not peer and (out := other.outbound.get(track.kind)):
                out.set_source(self._relay.subscribe(track, buffered=False))

    def _drain(self, peer: Peer, track: MediaStreamTrack) -> None:
        async def read_all() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()

        task = asyncio.create_task(read_all())
        peer.tasks.add(task)
        task.add_done_callback(peer.tasks.discard)

    def _on_state(self, peer: Peer) -> None:
        state = peer.pc.connectionState
        if self.peers.get(peer.role) is not peer:
            return
        self._notify({"type": "peer", "role": peer.role, "state": state})
        if state in ("failed", "closed"):
            task = asyncio.create_task(self._drop(peer))
            peer.commands.add(task)
            task.add_done_callback(peer.commands.discard)

    async def _drop(self, peer: Peer) -> None:
        if self.peers.get(peer.role) is peer:
            await self.leave(peer.role)

    # --- data channel ---------------------------------------------------------------------

    def _on_channel(self, peer: Peer, channel: RTCDataChannel) -> None:
        peer.channel = channel

        @channel.on("open")
        def opened() -> None:
            peer.send({"type": "state", **self.summary()})

        @channel.on("message")
        def received(message: str | bytes) -> None:
            if len(peer.commands) >= MAX_PENDING_MESSAGES:
                peer.send({"type": "error", "message": "too many commands at once; dropped"})
                return
            task = asyncio.create_task(self._handle_message(peer, message))
            peer.commands.add(task)
            task.add_done_callback(peer.commands.discard)

        if channel.readyState == "open":
            opened()

    async def _handle_message(self, peer: Peer, raw: str | bytes) -> None:
        try:
            message = parse_message(peer.role, raw)
            if message["type"] == "capture" and not peer.may_capture:
                raise MessageError("capturing needs the telehealth.capture permission")
            await self.command(peer.role, message, peer.actor)
        except (MessageError, CaptureError) as exc:
            peer.send({"type": "error", "message": str(exc)})

    async def command(self, role: Role, message: dict[str, Any], actor: str) -> dict[str, Any]:
        """Apply a checked message from ``role``; returns what happened (also sent to both)."""
        self._touch()
        kind = message["type"]
        if kind in ANNOTATIONS:
            if clinic := self.peers.get("clinic"):
                clinic.send({**message, "from": role})
            return {"type": kind, "delivered": clinic is not None}
        if kind == "source":
            self.capturer.declare_size(message["width"], message["height"])
            return message
        if kind in ("freeze", "unfreeze"):
            self.frozen = kind == "freeze"
            self.capturer.freeze(self.frozen)
            event = {"type": kind, "from": role}
            self._broadcast(event)
            return event
        return await self._capture(role, message, actor)

    async def _capture(self, role: Role, message: dict[str, Any], actor: str) -> dict[str, Any]:
        action, codec = message["action"], message["codec"]
        if action == "still":
            frame = await self.capturer.still(codec)
            return await self._store_frames(
                [frame], codec, actor, {"kind": "still", "by": role, "source": "stream"}
            )
        if action == "start":
            self.capturer.start_clip(codec, message.get("seconds"))
            self._recording_actor = actor
            event = {"type": "capture", "state": "recording", "by": role}
            self._broadcast(event)
            return event
        result = await self.capturer.stop_clip()
        if result is None:
            raise CaptureError("the clip could not be stored")
        return result

    async def store_source_still(
        self, png: bytes, actor: str, capture_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """A still the clinic recorded from its own device video, stored losslessly; with the
        page's ``capture_id``, once only however often the upload is retried. Returns the
        capture event and whether this call stored it."""
        if capture_id is None:
            return await self._store_source_still(png, actor), True
        if (known := self._source_stills.get(capture_id)) is not None:
            return await asyncio.shield(known), False
        # Stored to the end even if this upload's connection drops: its retry then waits here.
        task = asyncio.ensure_future(self._store_source_still(png, actor))
        self._source_stills[capture_id] = task
        task.add_done_callback(lambda done: self._forget_failed(capture_id, done))
        return await asyncio.shield(task), True

    def _forget_failed(self, capture_id: str, done: asyncio.Future[dict[str, Any]]) -> None:
        if done.cancelled() or done.exception() or done.result().get("state") != "stored":
            self._source_stills.pop(capture_id, None)  # a retry may succeed

    async def _store_source_still(self, png: bytes, actor: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        frame = await loop.run_in_executor(self._executor, source_frame, png)
        details = {"kind": "still", "by": "clinic", "source": "device"}
        return await self._store_frames([frame], "rle", actor, details, from_source=True)

    async def _clip_ended(self, outcome: ClipOutcome, codec: Codec) -> dict[str, Any]:
        details = {
            "kind": "clip",
            "source": "stream",
            "dropped": outcome.dropped,
            "ended": outcome.reason,
        }
        if not outcome.frames:
            event = {"type": "capture", "state": "failed", "message": "the clip has no frames"}
            self._broadcast(event)
            return event
        return await self._store_frames(outcome.frames, codec, self._recording_actor, details)

    async def _store_frames(
        self,
        frames: list[EncodedFrame],
        codec: Codec,
        actor: str,
        details: dict[str, Any],
        from_source: bool = False,
    ) -> dict[str, Any]:
        self._instance_number += 1
        context = CaptureContext(
            attributes=self.attributes,
            series_uid=self.series_uid,
            series_number=900,
            instance_number=self._instance_number,
            study_datetime=self.created,
            acquired=datetime.now(),
            codec=codec,
            jpeg_quality=self.settings.jpeg_quality,
            manufacturer=self.settings.manufacturer,
            station_name=self.settings.station_name,
            stream_codec=self._stream_codec,
            calibration=self.calibration,
            from_source=from_source,
        )
        loop = asyncio.get_running_loop()
        try:
            data = await loop.run_in_executor(self._executor, build_instance, frames, context)
            stored = await self._store(data, actor)
        except Exception as exc:
            log.exception("storing a capture failed")
            event = {"type": "capture", "state": "failed", "message": str(exc), **details}
            self._broadcast(event)
            return event
        event = {"type": "capture", **details, "frames": len(frames), **stored}
        self.captures.append(event)
        self._broadcast(event)
        return event

    # --- events ---------------------------------------------------------------------------

    def _broadcast(self, event: dict[str, Any]) -> None:
        for peer in self.peers.values():
            peer.send(event)
        self._notify(event)

    def _notify(self, event: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(event)

    def _touch(self) -> None:
        self.last_active = asyncio.get_running_loop().time()

    @property
    def idle(self) -> bool:
        return not self.peers


def parse_message(role: Role, raw: str | bytes) -> dict[str, Any]:
    """Validate a data-channel message and check that ``role`` may send it."""
    if isinstance(raw, bytes) or len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError("messages are JSON text up to 4 KiB")
    try:
        message = json.loads(raw)
    except json.JSONDecodeError:
        raise MessageError("message is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise MessageError("message needs a string 'type'")
    kind = message["type"]
    if kind not in MESSAGES_ALLOWED[role]:
        raise MessageError(f"the {role} may not send {kind!r}")
    if kind == "pointer":
        return {"type": kind, "x": _unit(message, "x"), "y": _unit(message, "y")}
    if kind == "arrow":
        return {"type": kind, **{k: _unit(message, k) for k in ("x0", "y0", "x1", "y1")}}
    if kind == "capture":
        return capture_command(message)
    if kind == "source":
        size = {k: message.get(k) for k in ("width", "height")}
        if not all(isinstance(v, int) and 16 <= v <= 8192 for v in size.values()):
            raise MessageError("source needs integer width and height (16..8192)")
        return {"type": kind, **size}
    return {"type": kind}


def capture_command(message: dict[str, Any]) -> dict[str, Any]:
    action = message.get("action")
    if action not in ("still", "start", "stop"):
        raise MessageError("capture action must be still, start or stop")
    codec = message.get("codec", "jpeg")
    if codec not in ("jpeg", "rle"):
        raise MessageError("capture codec must be jpeg or rle")
    command: dict[str, Any] = {"type": "capture", "action": action, "codec": codec}
    if (seconds := message.get("seconds")) is not None:
        if not isinstance(seconds, int | float) or not 0 < seconds <= 600:
            raise MessageError("capture seconds must be a number in (0, 600]")
        command["seconds"] = float(seconds)
    return command


def _unit(message: dict[str, Any], key: str) -> float:
    value = message.get(key)
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise MessageError(f"{key} must be a number between 0 and 1 (fraction of the image)")
    return float(value)


def _receiver_of(pc: RTCPeerConnection, track: MediaStreamTrack) -> RTCRtpReceiver | None:
    for transceiver in pc.getTransceivers():
        if transceiver.receiver.track is track:
            return transceiver.receiver
    return None


def _video_codec(pc: RTCPeerConnection) -> str:
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video" and transceiver._codecs:
            return transceiver._codecs[0].mimeType.split("/")[-1]
    return ""
