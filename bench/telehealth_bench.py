"""Telehealth relay + capture benchmark: 640x480 at 30 fps, clinic -> hub -> specialist.

Runs the whole hub in a child process (so its CPU is measured alone) and two aiortc peers in
this one, all on loopback. The clinic plays the real ultrasound cine color3d_jpeg_baseline.dcm
with the frame number drawn as a 16-bit block code in the top-left corner; the specialist reads
it back, so each received frame is matched to the moment the clinic handed it to its encoder.

Measured over a steady window, while the hub also records a clip of the whole window:
  - frames delivered per second at the specialist;
  - one-way latency clinic -> hub -> specialist, and the same through a direct clinic ->
    specialist connection (no hub); their median difference is the latency the hub adds;
  - captured frames dropped (the hub's own count) and frames in the stored clip;
  - CPU seconds per second used by the hub process.

    python bench/telehealth_bench.py --seconds 20 [--append-results]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import aiohttp
import numpy as np
import psutil
import pydicom
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from telehealth.ice import rtc_configuration, use_host_candidates  # noqa: E402

FPS = 30
BITS, BLOCK = 16, 24  # frame-number code: 16 blocks of 24x24 pixels along the top edge
RESULTS = ROOT / "bench" / "RESULTS.md"


# --- the hub, in its own process ---------------------------------------------------------------


async def serve(data_dir: Path, port: int, marker_completion: bool) -> None:
    from aiohttp import web

    from hub.app import build_app
    from hub.app_keys import ARCHIVE_KEY
    from hub.config import Settings, TelehealthSettings
    from hub.security.accounts import create_user, issue_token

    settings = Settings(
        data_dir=data_dir,
        port=port,
        telehealth=TelehealthSettings(
            ice_candidates="loopback", marker_completion=marker_completion
        ),
    )
    app = await build_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    tokens = {}
    for role in ("clinic", "specialist"):
        await create_user(app[ARCHIVE_KEY].engine, f"bench-{role}", role, None)
        _, tokens[role] = await issue_token(app[ARCHIVE_KEY].engine, f"bench-{role}")
    print(json.dumps(tokens), flush=True)
    await asyncio.Event().wait()


# --- the peers ---------------------------------------------------------------------------------


class CodedCine(MediaStreamTrack):
    """The cine at 30 fps; frame n carries n in a block code and its send time is noted."""

    kind = "video"

    def __init__(self, frames: np.ndarray) -> None:
        super().__init__()
        self.frames = frames
        self.sent_at: dict[int, float] = {}
        self.n = 0
        self.start: float | None = None

    async def recv(self) -> VideoFrame:
        loop = asyncio.get_running_loop()
        self.start = self.start or loop.time()
        await asyncio.sleep(max(0.0, self.start + self.n / FPS - loop.time()))
        rgb = self.frames[self.n % len(self.frames)].copy()
        code = self.n % (1 << BITS)
        for bit in range(BITS):
            rgb[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if code >> bit & 1 else 0
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = self.n * 3000, Fraction(1, 90000)
        self.sent_at[code] = time.monotonic()
        self.n += 1
        return frame


def read_code(frame: VideoFrame) -> int:
    luma = frame.to_ndarray(format="gray")[:BLOCK, : BITS * BLOCK]
    centres = luma[BLOCK // 2, BLOCK // 2 :: BLOCK][:BITS]
    return sum(1 << bit for bit, value in enumerate(centres) if value > 128)


class Receiver:
    def __init__(self, sent_at: dict[int, float]) -> None:
        self.sent_at = sent_at
        self.latencies: list[float] = []
        self.arrivals: list[float] = []
        self.window = False

    async def read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if track.kind != "video" or not self.window:
                    continue
                now = time.monotonic()
                sent = self.sent_at.get(read_code(frame))
                self.arrivals.append(now)
                if sent is not None and 0 <= now - sent < 5:
                    self.latencies.append(now - sent)


async def offer_answer(pc: RTCPeerConnection, answer_for) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    sdp = await answer_for(pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))


async def signalled(http: aiohttp.ClientSession, url: str, token: str):
    ws = await http.ws_connect(url, params={"token": token})

    async def answer_for(sdp: str) -> str:
        await ws.send_json({"type": "offer", "sdp": sdp})
        async for msg in ws:
            message = json.loads(msg.data)
            if message["type"] == "answer":
                return message["sdp"]
            if message["type"] == "error":
                raise RuntimeError(message["message"])
        raise RuntimeError("signalling closed")

    return ws, answer_for


async def via_hub(url: str, tokens: dict[str, str], frames: np.ndarray, seconds: float) -> dict:
    headers = {role: {"Authorization": f"Bearer {t}"} for role, t in tokens.items()}
    body = {"patient": {"name": "Bench^Cine", "id": "BENCH-1"}, "accession": "BENCH"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/api/telehealth/sessions", json=body, headers=headers["clinic"]
        ) as r:
            session = await r.json()
        async with http.post(
            f"{url}/api/telehealth/join",
            json={"code": session["invite_code"]},
            headers=headers["specialist"],
        ) as r:
            joined = await r.json()
        signal = f"{url}/api/telehealth/sessions/{session['id']}/signal"

        source = CodedCine(frames)
        clinic = RTCPeerConnection(rtc_configuration())
        clinic.addTrack(source)
        channel = clinic.createDataChannel("guidance")
        events: asyncio.Queue = asyncio.Queue()
        channel.on("message", lambda m: events.put_nowait(json.loads(m)))
        opened = asyncio.Event()
        channel.on("open", opened.set)
        async with aiohttp.ClientSession(headers=headers["clinic"]) as clinic_http:
            ws_c, answer_c = await signalled(clinic_http, signal, session["clinic_token"])
            await offer_answer(clinic, answer_c)

            receiver = Receiver(source.sent_at)
            specialist = RTCPeerConnection(rtc_configuration())
            specialist.addTransceiver("video", direction="recvonly")
            specialist.on("track", lambda t: asyncio.ensure_future(receiver.read(t)))
            async with aiohttp.ClientSession(headers=headers["specialist"]) as spec_http:
                ws_s, answer_s = await signalled(spec_http, signal, joined["specialist_token"])
                await offer_answer(specialist, answer_s)
                await asyncio.sleep(5)  # warm-up: bitrate ramp, first keyframe

                await opened.wait()
                capture = {"type": "capture", "action": "start", "seconds": seconds}
                channel.send(json.dumps(capture))
                result = await measure(receiver, seconds)
                status = f"{url}/api/telehealth/sessions/{session['id']}"
                async with spec_http.get(
                    status, headers={"X-Telehealth-Token": joined["specialist_token"]}
                ) as r:
                    result["relay_skipped"] = (await r.json())["live_frames_skipped"]
                async with asyncio.timeout(seconds + 60):
                    while (event := await events.get()).get("kind") != "clip":
                        pass
                result["clip"] = event
                await specialist.close()
                await ws_s.close()
            await clinic.close()
            await ws_c.close()
    return result


async def direct(frames: np.ndarray, seconds: float) -> dict:
    """The same media without the hub: one aiortc peer straight to the other."""
    source = CodedCine(frames)
    sender, receiver_pc = (
        RTCPeerConnection(rtc_configuration()),
        RTCPeerConnection(rtc_configuration()),
    )
    sender.addTrack(source)
    receiver = Receiver(source.sent_at)
    receiver_pc.on("track", lambda t: asyncio.ensure_future(receiver.read(t)))

    async def answer_for(sdp: str) -> str:
        await receiver_pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        return receiver_pc.localDescription.sdp

    await offer_answer(sender, answer_for)
    await asyncio.sleep(5)
    result = await measure(receiver, seconds)
    await sender.close()
    await receiver_pc.close()
    return result


async def measure(receiver: Receiver, seconds: float) -> dict:
    receiver.window = True
    await asyncio.sleep(seconds)
    receiver.window = False
    arrivals, latencies = receiver.arrivals, sorted(receiver.latencies)
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    return {
        "fps": (len(arrivals) - 1) / span if span else 0.0,
        "latency_ms_p50": 1000 * statistics.median(latencies),
        "latency_ms_p95": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        "frames": len(arrivals),
    }


async def run(seconds: float, marker_completion: bool) -> dict:
    use_host_candidates("loopback")
    frames = pydicom.dcmread(get_testdata_file("color3d_jpeg_baseline.dcm")).pixel_array
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            tmp,
            str(port),
            str(int(marker_completion)),
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            tokens = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))
            hub = psutil.Process(child.pid)
            cpu0, wall0 = sum(hub.cpu_times()[:2]), time.monotonic()
            hubbed = await via_hub(f"http://127.0.0.1:{port}", tokens, frames, seconds)
            hubbed["hub_cpu"] = (sum(hub.cpu_times()[:2]) - cpu0) / (time.monotonic() - wall0)
        finally:
            child.terminate()
            await child.wait()
    baseline = await direct(frames, seconds)
    return {"hub": hubbed, "direct": baseline}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def report(result: dict, seconds: float) -> str:
    hub, base, clip = result["hub"], result["direct"], result["hub"]["clip"]
    added = hub["latency_ms_p50"] - base["latency_ms_p50"]
    rows = [
        ("frames delivered / s at the specialist", f"{hub['fps']:.1f}", f"{base['fps']:.1f}", "30"),
        (
            "one-way latency p50 / p95 (ms)",
            f"{hub['latency_ms_p50']:.0f} / {hub['latency_ms_p95']:.0f}",
            f"{base['latency_ms_p50']:.0f} / {base['latency_ms_p95']:.0f}",
            "",
        ),
        ("latency added by the hub, p50 (ms)", f"{added:.0f}", "", "< 50"),
        (
            "live frames the hub skipped (encoder busy, newest wins)",
            f"{hub['relay_skipped']}",
            "",
            "",
        ),
        (
            f"captured clip: frames / dropped ({seconds:g} s)",
            f"{clip.get('frames')} / {clip.get('dropped')}",
            "",
            f"{int(seconds * FPS)} / 0",
        ),
        ("hub CPU (s per s, 2 cores = 2.0)", f"{hub['hub_cpu']:.2f}", "", ""),
    ]
    lines = [
        "| measure | through the hub | direct (no hub) | target |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--append-results", action="store_true")
    parser.add_argument(
        "--aiortc-jitter-buffer",
        action="store_true",
        help="keep aiortc's own video jitter buffer in the hub (marker_completion off)",
    )
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        use_host_candidates("loopback")
        asyncio.run(serve(Path(args.serve[0]), int(args.serve[1]), args.serve[2] == "1"))
        return 0
    marker = not args.aiortc_jitter_buffer
    result = asyncio.run(run(args.seconds, marker))
    table = report(result, args.seconds)
    print(table)
    print(json.dumps(result, indent=1, default=str), file=sys.stderr)
    if args.append_results:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        jitter = "aiortc's own" if args.aiortc_jitter_buffer else "marker completion (default)"
        flag = " --aiortc-jitter-buffer" if args.aiortc_jitter_buffer else ""
        load = "/".join(f"{v:.1f}" for v in os.getloadavg())
        cpu = f"{os.cpu_count()} cores, load average {load} at the end (machine shared)"
        section = (
            f"\n## Telehealth relay + capture, {stamp}\n\n"
            f"640x480 cine at 30 fps over loopback, VP8, {args.seconds:g} s window after 5 s "
            f"warm-up, {cpu}. `python bench/telehealth_bench.py --seconds {args.seconds:g}{flag}`\n\n"
            f"{table}\n\n"
            f"Hub video jitter buffer: {jitter}. aiortc's own buffer hands a frame on only when "
            "the next frame's first packet arrives (+1 frame time, 33 ms, per aiortc receiver); "
            "the hub's marker-completing buffer (telehealth/jitter.py) does not wait. The direct "
            "path's receiver is stock aiortc in both cases. Capture runs on its own tap and "
            "queue; dropped frames are the hub's count.\n"
        )
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
