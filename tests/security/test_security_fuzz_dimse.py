"""Fuzzing the DIMSE port with malformed PDUs: association requests with damaged fields,
PDUs of wrong types and lengths, and damaged P-DATA after a real association.

Target: the SCP answers or drops each connection, keeps serving (C-ECHO works after the run),
and stores nothing.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest
from hubtest import free_port, running_hub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pynetdicom import AE

from hub.archive.query import Query
from hub.config import DimseSettings, Settings

pytestmark = pytest.mark.peers

HUB_AE = b"TESSERA".ljust(16)
APP_CONTEXT = b"1.2.840.10008.3.1.1.1"
CT_STORAGE = b"1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = b"1.2.840.10008.1.2.1"


def item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def pdu(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBI", kind, 0, len(body)) + body


def associate_rq(context_id: int = 1) -> bytes:
    """A well-formed A-ASSOCIATE-RQ (PS3.8 9.3.2), written out so that it can be damaged."""
    presentation = item(
        0x20,
        bytes([context_id, 0, 0, 0]) + item(0x30, CT_STORAGE) + item(0x40, EXPLICIT_LE),
    )
    user = item(0x50, item(0x51, struct.pack(">I", 16384)))
    header = struct.pack(">H", 1) + b"\0\0" + HUB_AE + b"FUZZER".ljust(16) + bytes(32)
    return pdu(0x01, header + item(0x10, APP_CONTEXT) + presentation + user)


@st.composite
def damaged(draw, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(out) - 1))
        out[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(out)))
    return bytes(out[:cut]) if draw(st.booleans()) else bytes(out)


raw_pdus = st.builds(
    lambda kind, length, body: struct.pack(">BBI", kind, 0, length) + body,
    st.integers(0, 255),
    st.one_of(st.integers(0, 0xFFFFFFFF), st.just(0)),
    st.binary(max_size=512),
)
p_data = st.builds(
    lambda ctx, header, body: pdu(
        0x04, item(0, b"")[:0] + struct.pack(">IB", len(body) + 2, ctx) + bytes([header]) + body
    ),
    st.integers(0, 255),
    st.integers(0, 3),
    st.binary(max_size=256),
)


def exchange(port: int, first: bytes, then: bytes | None) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(1)
        try:
            sock.sendall(first)
            if then is not None:
                sock.recv(4096)  # the association answer
                sock.sendall(then)
            sock.recv(4096)
        except OSError:
            pass  # dropped by the SCP: an acceptable answer to garbage


def echo(port: int) -> bool:
    ae = AE(ae_title="FUZZCHECK")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="TESSERA")
    try:
        return assoc.is_established and assoc.send_c_echo().Status == 0
    finally:
        if assoc.is_established:
            assoc.release()


def recovers(port: int) -> bool:
    """C-ECHO succeeds once the timeouts have closed what the fuzzer left half-open."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if echo(port):
            return True
        time.sleep(1)
    return False


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=st.one_of(
    st.tuples(damaged(associate_rq()), st.none()),
    st.tuples(raw_pdus, st.none()),
    st.tuples(st.just(associate_rq()), p_data),
    st.tuples(st.just(associate_rq()), raw_pdus),
))  # fmt: skip
def test_dimse_pdu_fuzz(case: tuple[bytes, bytes | None]) -> None:
    first, then = case
    exchange(FUZZ_HUB["port"], first, then)


FUZZ_HUB: dict = {}


@pytest.fixture(scope="module", autouse=True)
def fuzz_hub(tmp_path_factory):
    """One hub with its DICOM port for the whole run, in a thread with its own loop."""
    import threading

    port = free_port()
    # Short network timeouts: a half-sent PDU holds its association until they expire.
    settings_ = Settings(
        data_dir=tmp_path_factory.mktemp("fuzz-dimse"),
        port=free_port(),
        dimse_port=port,
        dimse=DimseSettings(timeout=3),
    )
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    holder: dict = {}

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with running_hub(settings_) as hub:
            holder["hub"] = hub
            ready.set()
            await stop.wait()
            holder["instances"] = await hub.archive.search(Query(level="INSTANCE"))
            holder["temp"] = list(settings_.tmp_dir.iterdir())

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(60)
    FUZZ_HUB.update(port=port)
    yield
    assert recovers(port), "the SCP stopped answering C-ECHO after the fuzz run"
    loop.call_soon_threadsafe(stop.set)
    thread.join(60)
    assert holder["instances"] == []
    assert holder["temp"] == []
