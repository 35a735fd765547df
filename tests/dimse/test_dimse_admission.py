"""Connections that never ask for an association cannot lock other peers out of the SCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dimse_peers import AE, HOST, DimseHub, need_dcmtk, run, running_dimse_hub

from hub.config import DimseSettings, Settings
from hub.security.tls import make_self_signed

pytestmark = pytest.mark.peers

SETUP_TIMEOUT = 5.0
# Loopback answers on all of 127/8: an address of its own makes the idle peer a different one.
IDLE_PEER = "127.0.0.2"
# An A-ASSOCIATE-RQ PDU header announcing 4096 bytes that never come.
PARTIAL_PDU = b"\x01\x00\x00\x00\x10\x00"


def _settings(tmp_path: Path, **dimse) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        dimse_port=0,
        ae_title=AE,
        dimse=DimseSettings(setup_timeout=SETUP_TIMEOUT, max_associations=16, **dimse),
    )


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[DimseHub]:
    need_dcmtk()
    async with running_dimse_hub(_settings(tmp_path)) as running:
        yield running


@pytest.fixture
async def tls_hub(tmp_path: Path) -> AsyncIterator[DimseHub]:
    need_dcmtk()
    cert, key = make_self_signed(tmp_path / "tls")
    tls = {"cert": str(cert), "key": str(key)}
    async with running_dimse_hub(_settings(tmp_path, tls=tls)) as running:
        yield running


async def _idle_connections(port: int, count: int, first_bytes: bytes) -> list:
    connections = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection(HOST, port, local_addr=(IDLE_PEER, 0))
        writer.write(first_bytes)
        await writer.drain()
        connections.append((reader, writer))
    return connections


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(100), within) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_idle_connections_get_half_the_slots_and_a_deadline(hub: DimseHub) -> None:
    idle = await _idle_connections(hub.port, 20, PARTIAL_PDU)
    try:
        # Half of the 16 slots wait for their deadline; the other 12 were closed at once.
        closed = await asyncio.gather(*(_closed_by_server(r, 1.0) for r, _ in idle))
        assert closed.count(True) == 12, closed
        assert hub.server.admission.waiting() == 8

        echo = await run("echoscu", "-ta", "10", *hub.address)  # another peer is served now
        assert echo.rc == 0, echo

        waiting = [r for (r, _), gone in zip(idle, closed, strict=True) if not gone]
        expired = await asyncio.gather(*(_closed_by_server(r, SETUP_TIMEOUT + 10) for r in waiting))
        assert all(expired), expired
        assert hub.server.admission.waiting() == 0
    finally:
        for _, writer in idle:
            writer.close()


async def test_silent_peer_on_the_tls_port_stalls_nobody(tls_hub: DimseHub) -> None:
    """pynetdicom did the TLS handshake in its accepting thread: one silent connection kept
    every other peer waiting for the network timeout (60 s)."""
    (reader, writer), *_ = await _idle_connections(tls_hub.port, 1, b"")
    try:
        tls = ["+tla", "-ic", "-ta", "10"]
        echo = await run("echoscu", *tls, "-aec", AE, HOST, str(tls_hub.port))
        assert echo.rc == 0, echo
        assert await _closed_by_server(reader, SETUP_TIMEOUT + 10)
    finally:
        writer.close()


async def test_association_requests_are_not_held_to_the_deadline(hub: DimseHub) -> None:
    """A peer that associates keeps its association past the setup deadline."""
    from pynetdicom import AE as PeerAE
    from pynetdicom.sop_class import Verification

    peer = PeerAE(ae_title="SLOWSCU")
    peer.add_requested_context(Verification)
    assoc = await asyncio.to_thread(peer.associate, HOST, hub.port, ae_title=AE)
    try:
        assert assoc.is_established
        await asyncio.sleep(SETUP_TIMEOUT + 1)
        status = await asyncio.to_thread(assoc.send_c_echo)
        assert status.Status == 0x0000
    finally:
        await asyncio.to_thread(assoc.release)
