"""hub.dimse.scu against dcmtk storescp: stored files arrive byte for byte in their own
transfer syntax; an uncompressed file falls back to what the peer takes; a compressed file
the peer only takes uncompressed is reported, not transcoded."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from dimse_peers import (
    HOST,
    StoreSCP,
    content,
    dataset_sha,
    listing,
    retrieve_samples,
    syntax_of,
    wait_for_port,
)
from hubtest import free_port
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from hub.dimse.scu import send_files

pytestmark = pytest.mark.peers


async def test_send_files_keeps_bytes(receiver: StoreSCP) -> None:
    samples = retrieve_samples()
    results = await asyncio.to_thread(
        send_files, [s.path for s in samples], HOST, receiver.port, receiver.ae
    )
    assert len(results) == len(samples)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    received = {
        dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in listing(receiver.folder)
    }
    assert set(received) == {s.sop_uid for s in samples}
    for s in samples:
        assert syntax_of(received[s.sop_uid]) == s.syntax
        if s.path.name == "image_dfl.dcm":  # odd-length deflated stream: re-deflated, see scu
            assert content(received[s.sop_uid]) == content(s.path)
        else:
            assert dataset_sha(received[s.sop_uid]) == dataset_sha(s.path)  # the file's bytes


@pytest.fixture
def uncompressed_only(tmp_path: Path):
    """storescp accepting explicit VR little endian only."""
    scp = StoreSCP(tmp_path / "plain", free_port(), ae="PLAIN")
    scp.folder.mkdir(parents=True)
    scp.proc = subprocess.Popen(
        ["storescp", "-aet", "PLAIN", "+B", "+xe", "-od", str(scp.folder), str(scp.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(scp.port)
    yield scp
    scp.stop()


async def test_send_files_falls_back_or_reports(uncompressed_only: StoreSCP) -> None:
    samples = retrieve_samples()
    implicit = next(s for s in samples if s.syntax == ImplicitVRLittleEndian)
    j2k = next(s for s in samples if s.path.name == "MR2_J2KR.dcm")
    ok, refused = await asyncio.to_thread(
        send_files, [implicit.path, j2k.path], HOST, uncompressed_only.port, "PLAIN"
    )
    assert ok.ok
    (got,) = listing(uncompressed_only.folder)
    assert syntax_of(got) in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    assert not refused.ok and refused.status is None
    assert "no presentation context" in refused.message
    assert "JPEG 2000" in refused.message


async def test_send_files_to_nobody() -> None:
    sample = retrieve_samples()[0]
    (result,) = await asyncio.to_thread(send_files, [sample.path], HOST, free_port(), "NOBODY")
    assert not result.ok and "association" in result.message
