"""Bad input on the DIMSE port: each gets the right status or abort, nothing partial is
stored, and the SCP keeps serving (C-ECHO works afterwards)."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from io import BytesIO
from pathlib import Path

import pytest
from dimse_peers import (
    AE,
    HOST,
    PYDICOM_DATA,
    PYDICOM_TESTS,
    DimseHub,
    dataset_bytes,
    listing,
    run,
    storescu_config,
)
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, MRImageStorage, generate_uid
from pynetdicom import AE as PeerAE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

from hub.archive.query import Query
from hub.config import DimseSettings
from hub.dimse.config import DimseConfig
from hub.dimse.service import DimseServer

pytestmark = pytest.mark.peers

CT = PYDICOM_TESTS / "CT_small.dcm"


async def _still_serving(hub: DimseHub) -> None:
    echo = await run("echoscu", *hub.address)
    assert echo.rc == 0, echo


async def _instances(hub: DimseHub) -> list[dict]:
    return await hub.archive.search(Query(level="INSTANCE"))


def _temp_files(hub: DimseHub) -> list[Path]:
    return listing(hub.settings.tmp_dir)


async def test_garbage_bytes_are_dropped(dimse_hub: DimseHub) -> None:
    reader, writer = await asyncio.open_connection(HOST, dimse_hub.port)
    # 0xFF is no PDU type. Not random bytes: pynetdicom reads on after the first bad header,
    # and a random 6-byte run that looks like a PDU header with a large length makes it wait
    # for the rest of that "PDU" until the network timeout before it answers.
    writer.write(b"\xff" * 4096)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(10), 30)
    writer.close()
    assert answer[:1] == b"\x07", answer  # A-ABORT
    await _still_serving(dimse_hub)
    assert await _instances(dimse_hub) == []


def _crafted_store(port: int, path: Path, sop_class: str | None = None):
    """An association on the file's own context and the PDUs of a C-STORE-RQ for it, built
    by hand so that they can be cut short or name another SOP class."""
    ds = dcmread(path, stop_before_pixels=True)
    peer = PeerAE(ae_title="CRAFTER")
    peer.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = peer.associate(HOST, port, ae_title=AE)
    assert assoc.is_established
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = sop_class or ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 2
    request.DataSet = BytesIO(dataset_bytes(path))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    context_id = assoc.accepted_contexts[0].context_id
    return assoc, [_pdu(p) for p in message.encode_msg(context_id, 16384)]


def _abort_mid_store(port: int, path: Path) -> None:
    """Send the command and half of the data set's PDUs, then A-ABORT."""
    assoc, pdus = _crafted_store(port, path)
    assert len(pdus) > 10
    for pdu in pdus[: len(pdus) // 2]:
        assoc.dul.socket.send(pdu.encode())
    assoc.abort()


def _store_as_unknown_sop_class(port: int, path: Path) -> bool:
    assoc, pdus = _crafted_store(port, path, sop_class="1.2.826.0.1.3680043.9.7.1.99")
    for pdu in pdus:
        assoc.dul.socket.send(pdu.encode())
    deadline = time.monotonic() + 30  # for the SCP's A-ABORT
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.1)
    # No DIMSE answer came; (None, None) is what pynetdicom queues itself on an abort.
    answers = [msg for _, msg in list(assoc.dimse.msg_queue.queue) if msg is not None]
    aborted = assoc.is_aborted and not answers
    if assoc.is_established:
        assoc.release()
    return aborted


async def test_store_naming_an_unknown_sop_class_is_aborted(dimse_hub: DimseHub) -> None:
    """A C-STORE on an accepted CT context naming a SOP class no service knows: pynetdicom
    aborts the association (there is no DIMSE status to give for it); nothing is stored."""
    assert await asyncio.to_thread(_store_as_unknown_sop_class, dimse_hub.port, CT)
    await _still_serving(dimse_hub)
    assert await _instances(dimse_hub) == []
    assert _temp_files(dimse_hub) == []


def _pdu(primitive) -> P_DATA_TF:
    pdu = P_DATA_TF()
    pdu.from_primitive(primitive)
    return pdu


async def test_abort_mid_transfer_stores_nothing(dimse_hub: DimseHub) -> None:
    await asyncio.to_thread(
        _abort_mid_store, dimse_hub.port, PYDICOM_DATA / "color3d_jpeg_baseline.dcm"
    )
    await _still_serving(dimse_hub)
    assert await _instances(dimse_hub) == []
    assert _temp_files(dimse_hub) == []


async def test_unknown_sop_class_is_refused(dimse_hub: DimseHub, tmp_path: Path) -> None:
    ds = dcmread(CT)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.9.7.1.99"
    odd = tmp_path / "odd.dcm"
    ds.save_as(odd, enforce_file_format=True)
    from dimse_peers import Sample

    sample = Sample(odd, ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID)
    cfg = storescu_config([sample], tmp_path / "odd.cfg")
    result = await run("storescu", "-v", "--config-file", cfg, "Exact", *dimse_hub.address, odd)
    assert result.rc != 0 or "No presentation context" in result.out, result
    assert "No Acceptable Presentation Contexts" in result.out or "No presentation context" in (
        result.out
    ), result
    await _still_serving(dimse_hub)
    assert await _instances(dimse_hub) == []


def _send_raw(port: int, path: Path):
    """C-STORE a Part-10 file as it is on disk (pynetdicom streams it without parsing)."""
    meta = dcmread(path, stop_before_pixels=True).file_meta
    peer = PeerAE(ae_title="RAWSCU")
    peer.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    assoc = peer.associate(HOST, port, ae_title=AE)
    try:
        return assoc.send_c_store(path)
    finally:
        assoc.release()


async def test_dataset_without_uids_cannot_be_understood(
    dimse_hub: DimseHub, tmp_path: Path
) -> None:
    ds = dcmread(CT)
    del ds.SOPInstanceUID
    del ds.StudyInstanceUID
    bad = tmp_path / "no-uids.dcm"
    ds.save_as(bad)  # the file meta keeps the UIDs so the command can name the instance
    rsp = await asyncio.to_thread(_send_raw, dimse_hub.port, bad)
    assert rsp.Status == 0xC000
    assert "Missing" in rsp.ErrorComment
    await _still_serving(dimse_hub)
    assert await _instances(dimse_hub) == []
    assert _temp_files(dimse_hub) == []


# The file meta, and so the C-STORE request built from it, keeps naming the original CT instance.
@pytest.mark.parametrize(
    ("keyword", "value", "reason"),
    [
        ("SOPClassUID", MRImageStorage, "SOP Class"),
        ("SOPInstanceUID", generate_uid(), "SOP Instance UID differs"),
    ],
)
async def test_dataset_that_is_not_the_requested_one_is_refused(
    dimse_hub: DimseHub, tmp_path: Path, keyword: str, value: str, reason: str
) -> None:
    ds = dcmread(CT)
    setattr(ds, keyword, value)
    bad = tmp_path / "mismatch.dcm"
    ds.save_as(bad)
    rsp = await asyncio.to_thread(_send_raw, dimse_hub.port, bad)
    assert rsp.Status == 0xA900
    assert reason in rsp.ErrorComment and "differs" in rsp.ErrorComment
    assert await _instances(dimse_hub) == []
    assert _temp_files(dimse_hub) == []


@pytest.fixture
async def strict_hub(tmp_path: Path, dimse_hub: DimseHub):
    """A second SCP on the same archive: one calling AE allowed, uncompressed only."""
    settings = dimse_hub.settings
    settings.dimse = DimseSettings(
        allowed_aes=("GOODSCU",), transfer_syntaxes=(ExplicitVRLittleEndian,)
    )
    server = DimseServer(
        dimse_hub.archive, DimseConfig.from_settings(settings), asyncio.get_running_loop()
    )
    await asyncio.to_thread(server.start)
    yield DimseHub(dimse_hub.archive, server, settings)
    await asyncio.to_thread(server.stop)


async def test_calling_ae_allow_list(strict_hub: DimseHub) -> None:
    good = await run("echoscu", "-aet", "GOODSCU", *strict_hub.address)
    assert good.rc == 0, good
    bad = await run("echoscu", "-v", "-aet", "BADSCU", *strict_hub.address)
    assert bad.rc != 0 and "Association Rejected" in bad.out, bad


async def test_configured_transfer_syntaxes(strict_hub: DimseHub, tmp_path: Path) -> None:
    from dimse_peers import Sample

    path = PYDICOM_TESTS / "SC_rgb_jpeg_dcmtk.dcm"
    ds = dcmread(path, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    sample = Sample(path, ds.SOPClassUID, ds.SOPInstanceUID, JPEGBaseline8Bit)
    cfg = storescu_config([sample], tmp_path / "jpeg.cfg")
    result = await run(
        "storescu", "-v", "-aet", "GOODSCU", "--config-file", cfg, "Exact",
        *strict_hub.address, path,
    )  # fmt: skip
    assert "Success" not in result.out, result
    assert await _instances(strict_hub) == []


def _send_command_without_command_field(port: int) -> bool:
    """After a real association, a P-DATA whose command set has no Command Field: pynetdicom's
    decoder raises in its network thread. True if the SCP answers with an A-ABORT."""
    peer = PeerAE(ae_title="CRAFTER")
    peer.add_requested_context("1.2.840.10008.1.1")
    assoc = peer.associate(HOST, port, ae_title=AE)
    assert assoc.is_established
    command = b"\x00\x00\x10\x00\x04\x00\x00\x00" + b"1.2\x00"  # only (0000,1000)
    pdv = struct.pack(">IBB", len(command) + 2, assoc.accepted_contexts[0].context_id, 0x03)
    body = pdv + command
    assoc.dul.socket.send(struct.pack(">BBI", 0x04, 0, len(body)) + body)
    # Up to 30 s under load; without the guard the SCP stayed silent for a minute.
    deadline = time.monotonic() + 30
    while assoc.is_established and not assoc.is_aborted and time.monotonic() < deadline:
        time.sleep(0.1)
    aborted = assoc.is_aborted
    if assoc.is_established:
        assoc.abort()
    return aborted


async def test_undecodable_command_is_aborted(dimse_hub: DimseHub, monkeypatch) -> None:
    """The A-ABORT comes from the SCP's decoder guard, not from pynetdicom's network thread
    dying of the exception (which it did: the association then ended without a word)."""
    crashed: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    assert await asyncio.to_thread(_send_command_without_command_field, dimse_hub.port)
    await _still_serving(dimse_hub)
    assert crashed == []
    assert await _instances(dimse_hub) == []
