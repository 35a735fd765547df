"""The statement's DIMSE part is what the SCP does: every SOP class and transfer syntax it lists
is accepted in a real association and nothing else is; each Q/R model answers at the levels it
lists; each worklist key it lists matches; the implementation class UID is the one sent."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance_support import (
    CALLING_AE,
    HOST,
    DimseHub,
    hub_with_dimse,
    in_thread,
    patterns,
    served_statement,
    service,
)
from hubtest import free_port
from pydicom import Dataset, dcmread
from pydicom._uid_dict import UID_dictionary
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.sop_class import CTImageStorage, Verification

from hub.archive import Source
from hub.config import DimseSettings
from hub.worklist import model as worklist

CT = Path(get_testdata_file("CT_small.dcm"))
MAX_CONTEXTS = 120  # of the 128 an association may propose, with room for Verification


def _chunks(items: list, size: int = MAX_CONTEXTS) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def negotiate(port: int, proposed: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """Propose each (abstract syntax, transfer syntax) in a context of its own; which the SCP
    accepted. Verification rides along so that no association is left with nothing accepted."""
    outcome: dict[tuple[str, str], bool] = {}
    for chunk in _chunks(proposed):
        contexts = [build_context(Verification)]
        contexts += [build_context(abstract, [ts]) for abstract, ts in chunk]
        ae = AE(ae_title=CALLING_AE)
        assoc = ae.associate(HOST, port, contexts=contexts, ae_title="TESSERA")
        assert assoc.is_established
        accepted = {(cx.context_id, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        assoc.release()
        for n, pair in enumerate(chunk):
            context_id = 3 + 2 * n  # pynetdicom numbers the contexts 1, 3, 5, ...
            outcome[pair] = (context_id, UID(pair[1])) in accepted
    return outcome


@pytest.fixture
async def hub(settings) -> DimseHub:
    async with hub_with_dimse(settings) as running:
        yield running


async def test_every_listed_sop_class_and_syntax_is_accepted_and_nothing_else(hub) -> None:
    statement = await served_statement(hub.http)
    assert statement["dimse"]["enabled"] is True
    listed: set[tuple[str, str]] = set()
    for offered in (s for s in statement["dimse"]["services"] if s["role"] == "SCP"):
        for sop in offered["sop_classes"]:
            assert sop["name"] == UID(sop["uid"]).name
            listed |= {(sop["uid"], ts["uid"]) for ts in offered["transfer_syntaxes"]}
    (storage,) = service(statement, "Storage", "SCP")
    assert {s["uid"] for s in storage["sop_classes"]} >= {CTImageStorage}
    syntaxes = [ts["uid"] for ts in storage["transfer_syntaxes"]]

    # Each listed SOP class in its first syntax, and CT Image Storage in each listed syntax.
    wanted = [
        (sop["uid"], offered["transfer_syntaxes"][0]["uid"])
        for offered in statement["dimse"]["services"]
        if offered["role"] == "SCP"
        for sop in offered["sop_classes"]
    ]
    wanted += [(CTImageStorage, ts) for ts in syntaxes]
    # Every other SOP class pydicom knows, and every other transfer syntax, are refused.
    sops = {sop for sop, _ in listed}
    others = [u for u, entry in UID_dictionary.items() if entry[1] == "SOP Class" and u not in sops]
    unknown = [(u, ExplicitVRLittleEndian) for u in others]
    unknown += [("1.2.826.0.1.3680043.10.1077.1", ExplicitVRLittleEndian)]  # no SOP class at all
    unknown += [
        (CTImageStorage, u)
        for u in UID_dictionary
        if UID(u).is_transfer_syntax and u not in syntaxes
    ]
    assert others and len(unknown) > len(others) + 1, "something must be left to refuse"

    outcome = await in_thread(negotiate, hub.port, wanted + unknown)
    assert [p for p in wanted if not outcome[p]] == [], "listed but refused"
    assert [p for p in unknown if outcome[p]] == [], "accepted but not listed"


async def test_the_statement_follows_the_configured_syntaxes(settings) -> None:
    configured = dataclasses.replace(
        settings, dimse=DimseSettings(transfer_syntaxes=[JPEG2000Lossless])
    )
    async with hub_with_dimse(configured) as hub:
        statement = await served_statement(hub.http)
        (storage,) = service(statement, "Storage", "SCP")
        syntaxes = [ts["uid"] for ts in storage["transfer_syntaxes"]]
        assert syntaxes[0] == JPEG2000Lossless and JPEGBaseline8Bit not in syntaxes
        outcome = await in_thread(
            negotiate,
            hub.port,
            [(CTImageStorage, JPEG2000Lossless), (CTImageStorage, JPEGBaseline8Bit)],
        )
    assert outcome == {
        (CTImageStorage, JPEG2000Lossless): True,
        (CTImageStorage, JPEGBaseline8Bit): False,
    }


def _acceptor(port: int) -> tuple[str, str]:
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, port, ae_title="TESSERA")
    assert assoc.is_established
    found = (
        str(assoc.acceptor.implementation_class_uid),
        assoc.acceptor.implementation_version_name,
    )
    assoc.release()
    return found


async def test_the_implementation_class_uid_is_the_one_the_scp_sends(hub) -> None:
    product = (await served_statement(hub.http))["product"]
    assert await in_thread(_acceptor, hub.port) == (
        product["implementation_class_uid"],
        product["implementation_version_name"],
    )
    assert product["name"] == "tessera-hub" and product["version"]


async def test_a_listed_storage_class_is_stored_by_storescu(hub) -> None:
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed")
    statement = await served_statement(hub.http)
    (storage,) = service(statement, "Storage", "SCP")
    ds = dcmread(CT, stop_before_pixels=True)
    assert ds.SOPClassUID in {s["uid"] for s in storage["sop_classes"]}
    assert ds.file_meta.TransferSyntaxUID in {t["uid"] for t in storage["transfer_syntaxes"]}
    proc = await asyncio.create_subprocess_exec(
        "storescu", "-aec", "TESSERA", HOST, str(hub.port), str(CT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode(errors="replace")
    refs = await hub.http.archive.instances(ds.StudyInstanceUID)
    assert [r.sop_instance_uid for r in refs] == [ds.SOPInstanceUID]


# -- Query/Retrieve --------------------------------------------------------------------------

IDENTIFYING = {  # the unique key of each level, and those above it
    "PATIENT": ["PatientID"],
    "STUDY": ["PatientID", "StudyInstanceUID"],
    "SERIES": ["PatientID", "StudyInstanceUID", "SeriesInstanceUID"],
    "IMAGE": ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
}


def _identifier(stored: Dataset, level: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in IDENTIFYING[level]:
        setattr(ds, keyword, getattr(stored, keyword))
    return ds


def query_retrieve(port: int, model: str, stored: Dataset, level: str) -> tuple[list[int], int]:
    """A C-FIND, C-GET or C-MOVE (to CALLING_AE) with ``model`` at ``level``: the statuses
    answered, and the objects this SCU received by C-GET."""
    received: list[str] = []

    def on_store(event) -> int:
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    name = UID(model).name
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(model)
    # The stored syntax alone: offered several, the SCP would choose by its own preference for
    # the whole association, and the stored object would have no context (see the statement).
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    roles = [build_role(CTImageStorage, scp_role=True)] if name.endswith("GET") else []
    assoc = ae.associate(
        HOST, port, ae_title="TESSERA", ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert assoc.is_established
    identifier = _identifier(stored, level)
    if name.endswith("FIND"):
        responses = assoc.send_c_find(identifier, model)
    elif name.endswith("GET"):
        responses = assoc.send_c_get(identifier, model)
    else:
        responses = assoc.send_c_move(identifier, CALLING_AE, model)
    statuses = [int(status.Status) for status, _ in responses if "Status" in status]
    assoc.release()
    return statuses, len(received)


async def test_each_model_answers_at_the_levels_it_lists_and_no_other(settings) -> None:
    move_port = free_port()
    settings = dataclasses.replace(
        settings, dimse=DimseSettings(move_destinations={CALLING_AE: [HOST, move_port]})
    )
    moved: list[str] = []

    def on_store(event) -> int:
        moved.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    destination = AE(ae_title=CALLING_AE)
    destination.add_supported_context(CTImageStorage)
    # A refused C-MOVE is answered after associating with the destination, proposing
    # Verification (pynetdicom takes a status only then); storescp and PACS support it.
    destination.add_supported_context(Verification)
    server = destination.start_server(
        (HOST, move_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    stored = dcmread(CT, stop_before_pixels=True)
    try:
        async with hub_with_dimse(settings) as hub:
            await hub.http.archive.ingest_file(CT, source=Source(door="import"))
            models = (await served_statement(hub.http))["dimse"]["query_retrieve"]["models"]
            assert len(models) == 6
            for model in models:
                for level in IDENTIFYING:
                    moved.clear()
                    statuses, got = await in_thread(
                        query_retrieve, hub.port, model["uid"], stored, level
                    )
                    where = f"{model['name']} at {level}: {[hex(s) for s in statuses]}"
                    if level not in model["levels"]:
                        assert statuses[-1] == 0xA900, where
                    elif model["name"].endswith("FIND"):
                        assert statuses == [0xFF00, 0x0000], where
                    else:
                        assert statuses[-1] == 0x0000, where
                        assert got + len(moved) == 1, where
    finally:
        server.shutdown()


async def test_the_retrieve_keys_are_the_unique_keys(hub) -> None:
    keys = (await served_statement(hub.http))["dimse"]["query_retrieve"]["retrieve_keys"]
    assert keys == ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]


# -- Modality Worklist -----------------------------------------------------------------------

MWL = "1.2.840.10008.5.1.4.31"


def worklist_find(port: int, identifier: Dataset) -> list[Dataset]:
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(MWL)
    assoc = ae.associate(HOST, port, ae_title="TESSERA")
    assert assoc.is_established
    answers = []
    for status, found in assoc.send_c_find(identifier, MWL):
        assert int(status.Status) in (0x0000, 0xFF00, 0xFF01), status
        if found is not None:
            answers.append(found)
    assoc.release()
    return answers


def _path(keyword: str) -> list[str]:
    return [part.strip() for part in keyword.split(">")]


def _asking(keys: list[str], values: dict[str, str] | None = None) -> Dataset:
    """An MWL identifier with the keys (``Sequence > Keyword`` inside the step item), each
    empty or given its value."""
    values = values or {}
    ds = Dataset()
    for key in keys:
        *outer, keyword = _path(key)
        target = ds
        for sequence in outer:
            if not target.get(sequence):
                setattr(target, sequence, [Dataset()])
            target = getattr(target, sequence)[0]
        if keyword not in target:
            empty = [] if dictionary_VR(keyword) == "SQ" else ""
            setattr(target, keyword, values.get(key, empty))
    return ds


def _value(ds: Dataset, key: str) -> str:
    *outer, keyword = _path(key)
    for sequence in outer:
        ds = getattr(ds, sequence)[0]
    return str(getattr(ds, keyword))


async def test_each_worklist_key_matches_as_listed(hub) -> None:
    await worklist.create(
        hub.http.archive.engine,
        worklist.NewItem(
            patient_name="Worklist^Wanda",
            patient_id="MWL-7",
            modality="US",
            accession="ACC-MWL",
            requested_procedure_id="RP-55",
            sps_id="SPS-55",
            station_ae="USCART",
            start="2024-03-05T10:15:30",
        ),
    )
    mwl = (await served_statement(hub.http))["dimse"]["worklist"]
    keys = [k["keyword"] for k in mwl["matching_keys"]]
    (item,) = await in_thread(worklist_find, hub.port, _asking(mwl["return_keys"]))
    for key in mwl["return_keys"]:
        *outer, keyword = _path(key)
        holder = item
        for sequence in outer:
            holder = getattr(holder, sequence)[0]
        assert keyword in holder, f"{key} is not returned"
    for key in mwl["matching_keys"]:
        stored = _value(item, key["keyword"])
        assert stored, f"the item has no {key['keyword']} to match"
        for kind in key["matching"]:
            if kind == "single value" and key["keyword"].endswith("StepStatus"):
                cases = [(stored, True), ("COMPLETED", False)]
            else:
                cases = patterns(kind, stored)
            for pattern, expected in cases:
                identifier = _asking(keys, {key["keyword"]: pattern})
                found = await in_thread(worklist_find, hub.port, identifier)
                assert bool(found) == expected, f"{key['keyword']}={pattern!r} ({kind})"
    assert mwl["default_statuses"] == ["SCHEDULED", "STARTED"]
