"""A capture reaches the PACS: the archive's forwarding queue sends telehealth objects to a
real dcmtk storescp."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pydicom
import pytest
from hubtest import free_port
from telehealth_support import (
    CineTrack,
    audio_track,
    cine_frames,
    join_session,
    running_hub,
    start_session,
)

pytestmark = pytest.mark.peers


async def _wait_for_port(port: int, proc: asyncio.subprocess.Process, limit: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise RuntimeError("storescp exited at start")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"storescp does not listen on {port}")


def _named(folder: Path, sop_uid: str) -> list[Path]:
    return list(folder.glob(f"*.{sop_uid}"))


async def _arrived(folder: Path, sop_uid: str, limit: float = 60.0) -> Path:
    for _ in range(int(limit / 0.2)):
        # storescp names files <modality prefix>.<SOP Instance UID>
        found = await asyncio.to_thread(_named, folder, sop_uid)
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"{sop_uid} did not reach storescp within {limit} s")


@pytest.mark.skipif(shutil.which("storescp") is None, reason="dcmtk storescp is not installed")
async def test_captures_are_forwarded_to_the_pacs(tmp_path: Path) -> None:
    port, received = free_port(), tmp_path / "pacs"
    received.mkdir()
    pacs = await asyncio.create_subprocess_exec(
        *["storescp", "-aet", "PACS", "-od", str(received), "+xa", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    forward = {
        "targets": {
            "pacs": {"type": "dimse", "host": "127.0.0.1", "port": port, "called_ae": "PACS"}
        },
        "rules": [{"name": "telehealth", "targets": ["pacs"], "match": {"door": "telehealth"}}],
        "poll_interval": 0.2,
    }
    try:
        await _wait_for_port(port, pacs)
        async with (
            running_hub(tmp_path / "data", extra={"forward": forward}) as hub,
            aiohttp.ClientSession() as http,
        ):
            session = await start_session(http, hub)
            joined = await join_session(http, hub, session["invite_code"])
            clinic, specialist = hub.peer(session, "clinic"), hub.peer(joined, "specialist")
            try:
                await clinic.connect(CineTrack(cine_frames()), audio_track())
                await specialist.connect(audio_track(), receive_video=True)
                await specialist.wait_video(10)
                specialist.send({"type": "capture", "action": "start", "seconds": 1})
                clip = await specialist.next_message(lambda m: m.get("kind") == "clip")
                assert clip["state"] == "stored"
            finally:
                await clinic.close()
                await specialist.close()
            path = await _arrived(received, clip["sop_instance_uid"])
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"
        assert ds.NumberOfFrames == clip["frames"]
        assert ds.AccessionNumber == "ACC-TH-0001"
    finally:
        pacs.terminate()
        await pacs.wait()
