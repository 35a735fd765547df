"""HL7 orders over MLLP into the worklist of a running hub: NW, XO, CA and their ACKs, the
REST worklist, the MWL C-FIND answer (dcmtk findscu) and the audit trail."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import hl7
import pytest
from hl7.mllp import open_hl7_connection
from hl7_support import audited, hl7_port, msa, orm, worklist
from hubtest import HubProcess, free_port

from hub.dimse.service import DIMSE_KEY


async def test_new_order_is_a_scheduled_step(hub, peer) -> None:
    ack = await peer.send(orm())
    assert msa(ack)[:2] == ("AA", "MSG1")
    assert str(ack.segment("MSH")(9)) == "ACK^O01^ACK"
    (item,) = await worklist(hub)
    assert item["patient_id"] == "P7" and item["patient_name"] == "DOE^BABY"
    assert (item["birth_date"], item["sex"], item["age"]) == ("20260601", "F", "005M")
    assert (item["accession"], item["requested_procedure_id"], item["sps_id"]) == (
        "ACC-PL100",
        "RP-PL100",
        "SPS-PL100",
    )
    assert item["modality"] == "US" and item["status"] == "SCHEDULED"
    assert (item["start_date"], item["start_time"]) == ("20261128", "093000")
    assert item["requested_procedure_description"] == "Hip ultrasound"
    assert item["requested_procedure_codes"] == [
        {"value": "HIPUS", "scheme": "99T", "meaning": "Hip ultrasound"}
    ]
    assert item["protocol_codes"] == [
        {"value": "HIP-1", "scheme": "99T", "meaning": "Hip protocol"}
    ]
    assert item["sps_description"] == "Hip protocol"
    assert item["referring_physician"] == "SMITH^JOHN^^DR"  # PV1-8 wins over OBR-16
    (record,) = await audited(hub, "worklist.create")
    assert record.who == "hl7:RIS^HOSP" and record.study == item["study_uid"]
    assert record.patient == "P7" and '"order": "placer PL100^RIS"' in record.detail


async def test_resent_new_order_changes_nothing(hub, peer) -> None:
    assert msa(await peer.send(orm()))[0] == "AA"
    code, control_id, text = msa(await peer.send(orm(control_id="MSG2")))
    assert (code, control_id) == ("AA", "MSG2") and "already scheduled" in text
    assert len(await worklist(hub)) == 1
    assert len(await audited(hub, "worklist.create")) == 1


async def test_change_then_cancel(hub, peer) -> None:
    await peer.send(orm())
    (before,) = await worklist(hub)
    changed = orm("XO", "MSG2").replace("^^^20261128093000", "^^^202611301415")
    changed = changed.replace("DOE^BABY", "ROE^OTHER")  # patient data is not taken from XO
    assert msa(await peer.send(changed))[0] == "AA"
    (after,) = await worklist(hub)
    assert (after["start_date"], after["start_time"]) == ("20261130", "141500")
    assert after["patient_name"] == "DOE^BABY"
    assert after["study_uid"] == before["study_uid"] and after["accession"] == "ACC-PL100"
    assert len(await audited(hub, "worklist.update")) == 1

    assert msa(await peer.send(orm("CA", "MSG3")))[0] == "AA"
    assert (await worklist(hub))[0]["status"] == "CANCELLED"
    code, _, text = msa(await peer.send(orm("CA", "MSG4")))
    assert code == "AA" and "already cancelled" in text
    assert len(await audited(hub, "worklist.cancel")) == 1
    code, _, text = msa(await peer.send(orm("XO", "MSG5")))
    assert code == "AE" and "CANCELLED" in text


OMI = """MSH|^~\\&|RIS|HOSP|TESSERA|HUB|20261128080000||OMI^O23^OMI_O23|OMI1|P|2.5.1|||||||UNICODE UTF-8
PID|||P9^^^HOSP^MR||MÜLLER^ANNA||19800102|F
ORC|NW|PL200^RIS|FL200^RIS||SC
TQ1|||||||20261201101500
OBR|1|PL200^RIS|FL200^RIS|CTHEAD^CT head^99T
IPC|ACC200|RP200|1.2.826.0.1.3680043.10.1234.1|SPS200|CT|HEAD-1^Head protocol^99T||ROOM1|CTSCAN1"""


async def test_omi_order_through_the_library_client(hub) -> None:
    """python-hl7's own MLLP client as the sender; IPC names the study and the step."""
    reader, writer = await open_hl7_connection("127.0.0.1", hl7_port(hub), encoding="utf-8")
    try:
        writer.writemessage(hl7.parse(OMI.replace("\n", "\r")))
        await writer.drain()
        ack = await asyncio.wait_for(reader.readmessage(), 30)
    finally:
        writer.close()
        await writer.wait_closed()
    assert msa(ack)[:2] == ("AA", "OMI1")
    (item,) = await worklist(hub)
    assert item["study_uid"] == "1.2.826.0.1.3680043.10.1234.1"
    assert item["patient_name"] == "MÜLLER^ANNA"
    assert (item["accession"], item["requested_procedure_id"], item["sps_id"]) == (
        "ACC200",
        "RP200",
        "SPS200",
    )
    assert (item["modality"], item["station_ae"]) == ("CT", "CTSCAN1")
    assert (item["start_date"], item["start_time"]) == ("20261201", "101500")
    assert item["protocol_codes"] == [
        {"value": "HEAD-1", "scheme": "99T", "meaning": "Head protocol"}
    ]


async def test_orders_of_one_message_apply_together_or_not_at_all(hub, peer) -> None:
    second = orm(placer="PL101").split("\n")[3:]  # its ORC and OBR
    both = orm() + "\n" + "\n".join(second)
    assert msa(await peer.send(both))[0] == "AA"
    assert len(await worklist(hub)) == 2

    # A new order and a change to an order nobody sent: neither is applied.
    fresh = orm(placer="PL102").split("\n")[3:]
    unknown = orm("XO", placer="PL999").split("\n")[3:]
    mixed = orm(control_id="MSG9").split("\n")[:3] + fresh + unknown
    ack = await peer.send("\n".join(mixed))
    code, _, text = msa(ack)
    assert code == "AE" and "PL999" in text
    assert str(ack.segment("ERR")(3)).startswith("204^")  # unknown key identifier
    assert len(await worklist(hub)) == 2


@pytest.mark.peers
async def test_modality_finds_the_order_in_the_worklist(hub, peer, tmp_path: Path) -> None:
    if shutil.which("findscu") is None:
        pytest.skip("dcmtk is not installed")
    await peer.send(orm())
    (item,) = await worklist(hub)
    out = tmp_path / "mwl"
    out.mkdir()
    proc = await asyncio.create_subprocess_exec(
        "findscu", "-W", "-X", "-od", str(out), "-aec", "TESSERA",
        "-k", "AccessionNumber=ACC-PL100", "-k", "StudyInstanceUID", "-k", "PatientID",
        "-k", "ScheduledProcedureStepSequence[0].Modality=US",
        "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
        "127.0.0.1", str(hub.app[DIMSE_KEY].server.port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await proc.wait() == 0
    from pydicom import dcmread

    answers = [dcmread(p) for p in await asyncio.to_thread(lambda: sorted(out.iterdir()))]
    assert [(a.StudyInstanceUID, a.PatientID) for a in answers] == [(item["study_uid"], "P7")]
    assert answers[0].ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == "SPS-PL100"


def test_tessera_serve_runs_the_listener(tmp_path: Path) -> None:
    """`tessera serve` with TESSERA_HL7_PORT answers an order with an AA."""
    import socket

    port = free_port()
    hub = HubProcess(tmp_path / "data", free_port(), env={"TESSERA_HL7_PORT": str(port)})
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"\x0b" + orm().replace("\n", "\r").encode() + b"\x1c\r")
            answer = b""
            while not answer.endswith(b"\x1c\r"):
                answer += sock.recv(4096)
        assert b"MSA|AA|MSG1" in answer
    finally:
        hub.stop()
