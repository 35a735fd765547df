"""Slow and idle clients cannot hold the hub: header and body timeouts, connection caps.

Each test runs the attack with raw sockets against the whole hub on a real port, with short
limits in its settings, and waits for the server's answer (or its closing the connection)
within a generous deadline: nothing here measures how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hubtest import HubProcess, HubServer, free_port, running_hub
from pydicom.data import get_testdata_file

from hub.config import Settings

DEADLINE = 60.0  # seconds: far beyond every limit set below
SHORT = {
    "http_header_seconds": 1.0,
    "http_idle_seconds": 1.0,
    "http_body_min_rate": 1000,
    "http_body_grace_seconds": 1.0,
}


@contextlib.asynccontextmanager
async def hub_with(settings: Settings, **limits) -> AsyncIterator[HubServer]:
    async with running_hub(dataclasses.replace(settings, **limits)) as hub:
        yield hub


async def _connect(hub: HubServer, source: str = "127.0.0.1"):
    return await asyncio.open_connection("127.0.0.1", hub.settings.port, local_addr=(source, 0))


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), DEADLINE)


def problem_in(answer: bytes, status: int) -> dict:
    """The problem document of a raw HTTP answer of ``status``."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert b"\r\ncontent-type: application/problem+json" in head.lower(), head
    problem = json.loads(body)
    assert problem["status"] == status, problem
    return problem


async def test_a_request_head_that_never_ends_is_cut_off(settings: Settings) -> None:
    # Idle connections last long here: only the header timeout can end this one.
    async with hub_with(settings, **{**SHORT, "http_idle_seconds": DEADLINE * 2}) as hub:
        reader, writer = await _connect(hub)
        writer.write(b"GET /login HTTP/1.1\r\nHost: hub\r\nX-Slow: ")
        await writer.drain()
        answer = await _until_closed(reader)
        writer.close()
        assert "too slowly" in problem_in(answer, 408)["detail"]


async def test_an_idle_connection_is_closed(settings: Settings) -> None:
    async with hub_with(settings, **SHORT) as hub:
        reader, writer = await _connect(hub)
        assert await _until_closed(reader) == b""
        writer.close()


def _stow_head(hub: HubServer, length: int) -> bytes:
    lines = [
        "POST /dicomweb/studies HTTP/1.1",
        "Host: hub",
        f"Authorization: {hub.admin_headers['Authorization']}",
        'Content-Type: multipart/related; type="application/dicom"; boundary=XyZ',
        f"Content-Length: {length}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_body_that_never_comes_is_a_408(settings: Settings) -> None:
    async with hub_with(settings, **SHORT) as hub:
        reader, writer = await _connect(hub)
        writer.write(_stow_head(hub, 100_000))
        await writer.drain()
        answer = await _until_closed(reader)
        writer.close()
        assert "bytes per second" in problem_in(answer, 408)["detail"]


async def test_trickled_stow_bodies_are_408_and_leave_no_temp_files(settings: Settings) -> None:
    dicom = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    body = b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n" + dicom + b"\r\n--XyZ--\r\n"

    async def trickle(hub: HubServer) -> bytes:
        reader, writer = await _connect(hub)
        writer.write(_stow_head(hub, len(body)) + body[:300])
        await writer.drain()
        answer = asyncio.ensure_future(_until_closed(reader))
        for offset in range(300, len(body), 50):
            if answer.done():
                break
            with contextlib.suppress(ConnectionError):
                writer.write(body[offset : offset + 50])
                await writer.drain()
            await asyncio.sleep(0.25)  # the trickle itself: 200 bytes a second
        writer.close()
        return await answer

    async with hub_with(settings, **SHORT) as hub:
        answers = await asyncio.gather(*(trickle(hub) for _ in range(10)))
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
        temp = hub.settings.tmp_dir
        assert not temp.exists() or not any(temp.iterdir())


def _drip_and_read(port: int, head: bytes) -> bytes:
    """A client that goes on sending (a byte every 2 ms: 500 bytes a second) while it reads
    the answer to its end; a reset instead of the end raises ConnectionResetError."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(head + b"--XyZ\r\n")
        answered = threading.Event()

        def drip() -> None:
            with contextlib.suppress(OSError):
                while not answered.wait(0.002):
                    sock.send(b"x")

        dripping = threading.Thread(target=drip)
        dripping.start()
        try:
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            return answer
        finally:
            answered.set()
            dripping.join()


async def test_a_client_sending_on_reads_its_408_to_the_end(settings: Settings) -> None:
    """Bytes that arrive after the answer must not make the server reset the connection: a
    reset discards the 408 the client has not read yet."""
    async with hub_with(settings, **SHORT) as hub:
        head = _stow_head(hub, 100_000)
        answers = await asyncio.gather(
            *(asyncio.to_thread(_drip_and_read, hub.settings.port, head) for _ in range(10))
        )
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers


async def _partial_head(hub: HubServer, source: str):
    """A connection in the middle of sending its request head (so not idle)."""
    reader, writer = await _connect(hub, source)
    writer.write(b"GET /login HTTP/1.1\r\n")
    await writer.drain()
    return reader, writer


async def test_connections_are_capped_per_address_and_in_total(settings: Settings) -> None:
    limits = {"http_connections_per_address": 3, "http_connections_total": 5}
    async with hub_with(settings, http_header_seconds=DEADLINE * 2, **limits) as hub:
        held = [await _partial_head(hub, "127.0.0.5") for _ in range(3)]
        reader, writer = await _connect(hub, "127.0.0.5")
        assert "too many connections" in problem_in(await _until_closed(reader), 503)["detail"]
        writer.close()
        held += [await _partial_head(hub, "127.0.0.6") for _ in range(2)]
        reader, writer = await _connect(hub, "127.0.0.7")
        assert (await _until_closed(reader)).startswith(b"HTTP/1.1 503")
        writer.close()
        for _, w in held:
            w.close()


@pytest.mark.parametrize("count", [50])
async def test_idle_connections_make_room_for_new_ones(settings: Settings, count: int) -> None:
    limits = {"http_connections_per_address": 10, "http_connections_total": 20}
    async with hub_with(settings, **limits) as hub:
        opened = [await _connect(hub, "127.0.0.8") for _ in range(count)]
        # Each new connection closed the oldest idle one: only the last ten stay open.
        for reader, _ in opened[: count - 10]:
            assert await _until_closed(reader) == b""
        reader, writer = opened[-1]
        writer.write(b"GET /login HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        assert (await _until_closed(reader)).startswith(b"HTTP/1.1 200")
        for _, w in opened:
            w.close()


async def test_a_trickled_slide_chunk_is_a_408_and_the_upload_resumes(settings: Settings) -> None:
    async with hub_with(settings, **SHORT) as hub, hub.session() as session:
        async with session.post(
            hub.url + "/api/uploads", json={"filename": "a.svs", "size": 10_000}
        ) as resp:
            upload_id = (await resp.json())["id"]
        reader, writer = await _connect(hub)
        head = [
            f"PUT /api/uploads/{upload_id}?offset=0 HTTP/1.1",
            "Host: hub",
            f"Authorization: {hub.admin_headers['Authorization']}",
            "Content-Length: 10000",
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + b"x" * 2000)
        await writer.drain()
        answer = await _until_closed(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408")
        async with session.get(f"{hub.url}/api/uploads/{upload_id}") as resp:
            assert (await resp.json())["received"] == 2000  # what arrived is kept


def _reader_started(pid: int) -> bool:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return any(b"hub.serve.readers" in Path(f"/proc/{c}/cmdline").read_bytes() for c in children)


async def test_every_process_of_a_multi_process_hub_cuts_slow_heads_off(tmp_path) -> None:
    env = {"TESSERA_HTTP_HEADER_SECONDS": "1", "TESSERA_HTTP_IDLE_SECONDS": "600"}
    port = free_port()
    hub = await asyncio.to_thread(HubProcess, tmp_path / "data", port, "--workers", "2", env=env)
    try:
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not _reader_started(hub.proc.pid):
            assert asyncio.get_running_loop().time() < deadline, "no reader process"
            await asyncio.sleep(0.1)

        async def slow_head() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /dicomweb/studies HTTP/1.1\r\nHost: hub\r\n")
            await writer.drain()
            try:
                return await _until_closed(reader)
            finally:
                writer.close()

        # New connections go to whichever process accepts first: enough of them reach both.
        answers = await asyncio.gather(*(slow_head() for _ in range(20)))
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
    finally:
        await asyncio.to_thread(hub.stop)
