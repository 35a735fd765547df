"""Crash safety: SIGKILL the server in the middle of a STOW-RS stream, then recover."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from hubtest import free_port
from pydicom.data import get_testdata_file
from s3_server import local_layout

BOUNDARY = "crash-test"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
GOOD = Path(get_testdata_file("CT_small.dcm")).read_bytes()


def start_server(data: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--data", str(data), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with __import__("socket").create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(proc.stdout.read().decode() if proc.stdout else "server did not start")


def tessera(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=120
    )


def service_token(data: Path) -> dict[str, str]:
    assert (
        tessera(
            "user", "add", "--data", str(data), "--role", "integration", "--no-password", "svc"
        ).returncode
        == 0
    )
    issued = tessera("user", "token", "--data", str(data), "svc")
    (secret,) = [w for w in issued.stdout.split() if w.startswith("tsr_")]
    return {"Authorization": f"Bearer {secret}"}


async def stow_and_kill(url: str, proc: subprocess.Popen, auth: dict[str, str]) -> None:
    async def body():
        yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + GOOD[:1000]
        for _ in range(40):  # a slow, large second half: the server dies while it arrives
            yield b"\0" * 256 * 1024
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        await asyncio.sleep(0.2)
        yield b"\0" * 1024

    with pytest.raises(aiohttp.ClientError):
        async with (
            aiohttp.ClientSession(headers=auth) as session,
            session.post(
                url + "/dicomweb/studies", data=body(), headers={"Content-Type": STOW_TYPE}
            ) as r,
        ):
            await r.read()


async def count_instances(url: str, auth: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession(headers=auth) as session,
        session.get(url + "/dicomweb/instances") as r,
    ):
        assert r.status == 200
        return len(await r.json())


@pytest.mark.timeout(180)
async def test_sigkill_mid_stow_leaves_nothing_partial(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = service_token(data)
    proc = start_server(data, port)
    try:
        async with aiohttp.ClientSession(headers=auth) as session:
            body = (
                f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                + GOOD
                + f"\r\n--{BOUNDARY}--\r\n".encode()
            )
            async with session.post(
                url + "/dicomweb/studies", data=body, headers={"Content-Type": STOW_TYPE}
            ) as r:
                assert r.status == 200
        await stow_and_kill(url, proc, auth)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        assert list((data / "tmp").glob("*.part")), "the interrupted upload left its temp file"

        before = tessera("verify", "--data", str(data))
        assert before.returncode == 1 and "interrupted uploads" in before.stdout
        # A repair spares temp files written to lately (an upload may be filling them);
        # this one is made old, as it would be an hour after the crash.
        young = tessera("verify", "--data", str(data), "--repair")
        assert list((data / "tmp").glob("*.part")), young.stdout
        old = time.time() - 24 * 3600
        for temp in (data / "tmp").glob("*.part"):
            os.utime(temp, (old, old))
        repaired = tessera("verify", "--data", str(data), "--repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        after = tessera("verify", "--data", str(data))
        assert after.returncode == 0, after.stdout

        proc = start_server(data, port)
        assert await count_instances(url, auth) == 1
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def test_a_repair_right_after_the_server_was_killed_does_not_wait_for_its_lease(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    proc = start_server(data, free_port())
    proc.kill()
    proc.wait(timeout=10)
    # The killed server held the janitor lease for another lease time; its process is gone.
    repaired = tessera("verify", "--data", str(data), "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "not repaired" not in repaired.stdout


@local_layout
def test_verify_finds_and_quarantines_orphans_and_reports_damage(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert tessera("import", "--data", str(data), get_testdata_file("CT_small.dcm")).returncode == 0
    # A crash between the blob rename and the index commit cannot be timed from outside;
    # place the orphan it would leave by hand.
    orphan = data / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left behind")
    old = time.time() - 24 * 3600
    os.utime(orphan, (old, old))  # left by a crash a day ago, not an ingest in flight
    report = tessera("verify", "--data", str(data))
    assert report.returncode == 1 and "orphan blob" in report.stdout
    assert tessera("verify", "--data", str(data), "--repair").returncode == 0
    assert (data / "quarantine" / orphan.name).exists()
    assert tessera("verify", "--data", str(data)).returncode == 0
    (stored,) = [p for p in (data / "blobs").rglob("*") if p.is_file()]
    os.chmod(stored, 0o644)
    stored.write_bytes(b"damaged")
    damaged = tessera("verify", "--data", str(data))
    assert damaged.returncode == 1 and "corrupt blob" in damaged.stdout


def stored_blobs(data: Path) -> set[Path]:
    return {p for p in (data / "blobs").rglob("*") if p.is_file()}


@local_layout
@pytest.mark.timeout(180)
async def test_sigkill_between_blob_and_index_leaves_an_orphan_the_next_start_clears(
    tmp_path: Path,
) -> None:
    """The server dies after renaming a blob into the store and before its index commit: the
    test holds the SQLite write lock so that the ingest waits in exactly that window."""
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = service_token(data)
    proc = start_server(data, port)
    body = (
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + GOOD
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    lock = sqlite3.connect(data / "index.sqlite", timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        async with aiohttp.ClientSession(headers=auth) as session:
            sending = asyncio.create_task(
                session.post(
                    url + "/dicomweb/studies", data=body, headers={"Content-Type": STOW_TYPE}
                )
            )
            deadline = time.monotonic() + 60
            while not stored_blobs(data) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert stored_blobs(data), "the blob never reached the store"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            with pytest.raises(aiohttp.ClientError):
                await sending
    finally:
        lock.rollback() if lock.in_transaction else None
        lock.close()
    (orphan,) = stored_blobs(data)
    found = tessera("verify", "--data", str(data))
    assert found.returncode == 1 and "orphan blob" in found.stdout, found.stdout

    # A fresh orphan may be an ingest in flight elsewhere: kept until it is old enough.
    proc = start_server(data, port)
    try:
        assert stored_blobs(data) == {orphan}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    old = time.time() - 24 * 3600
    os.utime(orphan, (old, old))
    proc = start_server(data, port)
    try:
        assert stored_blobs(data) == set()
        assert (data / "quarantine" / orphan.name).exists()
        assert tessera("verify", "--data", str(data)).returncode == 0
        async with (
            aiohttp.ClientSession(headers=auth) as session,
            session.post(
                url + "/dicomweb/studies", data=body, headers={"Content-Type": STOW_TYPE}
            ) as r,
        ):
            assert r.status == 200
        assert await count_instances(url, auth) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
