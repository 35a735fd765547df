"""A guidance session against `tessera serve --workers 2`, as deployed.

The other telehealth tests serve the application inside the test process; this one runs the
real command, with its production event loop (uvloop where installed) and a reader process
that relays the signalling WebSockets and REST calls of whichever peer it accepts.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pydicom
from hubtest import free_port
from telehealth_support import CineTrack, Peer, cine_frames, join_session, start_session

REPO = Path(__file__).resolve().parents[2]


def _cli(data: Path, *args: str) -> str:
    command = [sys.executable, "-m", "hub.cli", *args, "--data", str(data)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout


def _token(data: Path, user: str, role: str) -> dict[str, str]:
    _cli(data, "user", "add", user, "--role", role, "--no-password")
    secret = _cli(data, "user", "token", user, "--days", "1").strip().splitlines()[-1].strip()
    return {"Authorization": f"Bearer {secret}"}


async def _started(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while b"Tessera is running" not in await proc.stdout.readline():
            pass


async def _retrieve(
    http: aiohttp.ClientSession, base: str, stored: dict, headers: dict[str, str]
) -> pydicom.Dataset:
    study = f"{base}/dicomweb/studies/{stored['study_uid']}"
    async with http.get(f"{study}/instances", headers=headers) as r:
        assert r.status == 200
        (item,) = await r.json()
    series = item["0020000E"]["Value"][0]
    url = f"{study}/series/{series}/instances/{stored['sop_instance_uid']}"
    accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    async with http.get(url, headers={**headers, **accept}) as r:
        assert r.status == 200
        body = await r.read()
    return pydicom.dcmread(BytesIO(body[body.index(b"DICM") - 128 :]), stop_before_pixels=True)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def test_still_capture_through_the_served_hub(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    headers = {role: _token(data, f"{role}-user", role) for role in ("clinic", "specialist")}
    reader = _token(data, "reader", "admin")
    env = {
        **os.environ,
        "TESSERA_EXTRA": json.dumps({"telehealth": {"ice_candidates": "loopback"}}),
    }
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "hub.cli", "serve", "--data", str(data)),
        *("--port", str(port), "--workers", "2"),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    hub = SimpleNamespace(url=f"http://127.0.0.1:{port}", headers=headers)
    draining: asyncio.Task | None = None
    try:
        await _started(proc)
        assert proc.stdout is not None
        draining = asyncio.create_task(_drain(proc.stdout))  # keep the pipe from filling
        async with aiohttp.ClientSession() as http:
            session = await start_session(http, hub)
            joined = await join_session(http, hub, session["invite_code"])
            clinic = Peer(
                hub.url, session["id"], session["clinic_token"], "clinic", headers["clinic"]
            )
            specialist = Peer(
                hub.url,
                joined["id"],
                joined["specialist_token"],
                "specialist",
                headers["specialist"],
            )
            try:
                await clinic.connect(CineTrack(cine_frames()))
                await specialist.connect(receive_video=True)
                await specialist.wait_video(30)
                specialist.send({"type": "capture", "action": "still"})
                stored = await specialist.next_message(
                    lambda m: m["type"] == "capture" and m.get("kind") == "still" and "state" in m
                )
            finally:
                await specialist.close()
                await clinic.close()
            stored_ds = await _retrieve(http, hub.url, stored, reader)
        assert stored_ds.SOPInstanceUID == stored["sop_instance_uid"]
        assert stored_ds.Modality == "US"
        assert stored_ds.PatientID == "PAED-0042"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        if draining is not None:
            await draining  # ends with the process's output
