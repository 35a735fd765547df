"""Patient updates (ADT^A08) and merges (ADT^A40) over MLLP into a running hub: what QIDO-RS,
WADO-RS metadata, C-FIND and Modality Worklist C-FIND (dcmtk findscu) show after them, the
stored bytes left as they were, objects still arriving under a merged ID, the audit trail, and
an administrator's revert."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from hl7_support import audited, msa, orm, worklist
from hubtest import tessera
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from hub.dimse.service import DIMSE_KEY
from hub.patients.tables import patient_changes
from hub.security.dimse_acl import allow_ae

CT = get_testdata_file("CT_small.dcm")
HEADER = "MSH|^~\\&|HIS|HOSP|TESSERA|HUB|20261201080000||ADT^{event}|{control_id}|P|2.5"


def adt(event: str, pid: str, *more: str, control_id: str = "ADT1") -> str:
    return "\n".join(
        [HEADER.format(event=event, control_id=control_id), "EVN||20261201080000", pid, *more]
    )


def a08(patient: str, name: str = "ROE^BABY", birth: str = "20260602", sex: str = "F") -> str:
    return adt("A08", f"PID|||{patient}^^^HOSP^MR||{name}||{birth}|{sex}")


def a40(survivor: str, prior: str, name: str = "ROE^BABY", control_id: str = "ADT2") -> str:
    pid = f"PID|||{survivor}^^^HOSP^MR||{name}||20260602|F"
    return adt("A40", pid, f"MRG|{prior}^^^HOSP^MR", control_id=control_id)


def study(patient_id: str, name: str, study_uid: str | None = None) -> pydicom.Dataset:
    """pydicom's CT as a new object of ``patient_id``, in a study of its own or ``study_uid``."""
    ds = pydicom.dcmread(CT)
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = patient_id, name, "20260601"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _client(hub) -> DICOMwebClient:
    return DICOMwebClient(url=f"{hub.url}/dicomweb", headers=hub.admin_headers)


async def stow(hub, *datasets: pydicom.Dataset) -> None:
    answer = await asyncio.to_thread(_client(hub).store_instances, list(datasets))
    assert "FailedSOPSequence" not in answer, answer


async def studies(hub, **keys: str) -> dict[str, pydicom.Dataset]:
    """QIDO-RS studies matching ``keys``, by Study Instance UID."""
    found = await asyncio.to_thread(_client(hub).search_for_studies, search_filters=keys)
    shown = [pydicom.Dataset.from_json(s) for s in found]
    return {s.StudyInstanceUID: s for s in shown}


async def metadata(hub, ds: pydicom.Dataset) -> pydicom.Dataset:
    meta = await asyncio.to_thread(
        _client(hub).retrieve_instance_metadata,
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
    )
    return pydicom.Dataset.from_json(meta)


async def stored_sha256(hub, ds: pydicom.Dataset) -> str:
    url = (
        f"{hub.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    async with hub.session() as http:
        headers = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 200
            part = await aiohttp.MultipartReader.from_response(resp).next()
            assert isinstance(part, aiohttp.BodyPartReader)
            body = await part.read()
    return hashlib.sha256(body).hexdigest()


async def changes(hub, **params: str) -> list[dict]:
    url = f"{hub.url}/api/admin/patients/changes"
    async with hub.session() as http, http.get(url, params=params) as resp:
        assert resp.status == 200
        return (await resp.json())["changes"]


async def revert(hub, change_id: int) -> tuple[int, dict]:
    url = f"{hub.url}/api/admin/patients/changes/{change_id}/revert"
    async with hub.session() as http, http.post(url) as resp:
        return resp.status, await resp.json()


async def change_count(hub) -> int:
    async with hub.archive.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(patient_changes))).scalar()


async def test_update_corrects_what_reads_show_and_keeps_the_objects(hub, peer) -> None:
    first, second = study("P7", "DOE^BABY"), study("P7", "DOE^BABY")
    await stow(hub, first, second)
    stored = await stored_sha256(hub, first)
    assert msa(await peer.send(orm()))[0] == "AA"  # a scheduled step of P7

    code, control_id, text = msa(await peer.send(a08("P7")))
    assert (code, control_id, text) == ("AA", "ADT1", "")

    shown = await studies(hub, PatientID="P7")
    assert set(shown) == {first.StudyInstanceUID, second.StudyInstanceUID}
    assert {(str(s.PatientName), s.PatientBirthDate) for s in shown.values()} == {
        ("ROE^BABY", "20260602")
    }
    assert set(await studies(hub, PatientName="ROE*")) == set(shown)
    assert await studies(hub, PatientName="DOE*") == {}
    meta = await metadata(hub, first)
    assert (str(meta.PatientName), meta.PatientBirthDate) == ("ROE^BABY", "20260602")
    assert meta.Modality == "CT" and meta.SOPInstanceUID == first.SOPInstanceUID
    assert await stored_sha256(hub, first) == stored  # the object is as received

    (step,) = await worklist(hub)
    assert (step["patient_name"], step["birth_date"], step["age"]) == (
        "ROE^BABY",
        "20260602",
        "005M",
    )
    (record,) = await audited(hub, "patient.update")
    assert (record.who, record.patient) == ("hl7:HIS^HOSP", "P7")
    assert '"studies": 2' in record.detail and '"steps": 1' in record.detail
    (logged,) = await changes(hub, patient="P7")
    assert logged["kind"] == "update" and logged["message"] == "ADT1"
    assert logged["reverted_at"] is None

    code, _, text = msa(await peer.send(a08("P7")))
    assert code == "AA" and "nothing to change" in text
    assert await change_count(hub) == 1


async def test_a_new_study_of_a_corrected_patient_is_found_by_the_new_name(hub, peer) -> None:
    await stow(hub, study("P7", "DOE^BABY"))
    assert msa(await peer.send(a08("P7")))[0] == "AA"
    late = study("P7", "DOE^BABY")  # a modality that still has the old name
    await stow(hub, late)
    assert late.StudyInstanceUID in await studies(hub, PatientName="ROE^BABY")
    assert str((await metadata(hub, late)).PatientName) == "ROE^BABY"


async def test_merge_moves_the_studies_and_files_late_objects_with_the_survivor(hub, peer) -> None:
    kept, prior = study("P7", "DOE^BABY"), study("P8", "DOE^B")
    await stow(hub, kept, prior)

    assert msa(await peer.send(a40("P7", "P8")))[0] == "AA"

    assert set(await studies(hub, PatientID="P7")) == {
        kept.StudyInstanceUID,
        prior.StudyInstanceUID,
    }
    assert await studies(hub, PatientID="P8") == {}
    meta = await metadata(hub, prior)
    assert (meta.PatientID, str(meta.PatientName)) == ("P7", "ROE^BABY")
    assert [o.PatientID for o in meta.OtherPatientIDsSequence] == ["P8"]

    # A late series of the moved study, and a new study, still naming the prior patient.
    late_series, late_study = study("P8", "DOE^B", prior.StudyInstanceUID), study("P8", "DOE^B")
    await stow(hub, late_series, late_study)
    survivors = await studies(hub, PatientID="P7")
    assert set(survivors) == {
        kept.StudyInstanceUID,
        prior.StudyInstanceUID,
        late_study.StudyInstanceUID,
    }
    assert survivors[prior.StudyInstanceUID].NumberOfStudyRelatedInstances == 2

    code, _, text = msa(await peer.send(a40("P7", "P8", control_id="ADT3")))
    assert code == "AA" and "merged into P7 (HOSP) already" in text
    (record,) = await audited(hub, "patient.merge")
    assert record.patient == "P7" and '"prior": "P8"' in record.detail


async def test_merge_of_a_patient_the_index_does_not_know_yet(hub, peer) -> None:
    """The RIS merges before the prior patient's first object arrives: it arrives merged."""
    assert msa(await peer.send(a40("P7", "P9")))[0] == "AA"
    early = study("P9", "DOE^B")
    await stow(hub, early)
    found = await studies(hub, PatientID="P7")
    assert list(found) == [early.StudyInstanceUID]
    assert str(found[early.StudyInstanceUID].PatientName) == "ROE^BABY"


async def test_an_admin_reverts_changes_latest_first(hub, peer) -> None:
    kept, prior = study("P7", "DOE^BABY"), study("P8", "DOE^B")
    await stow(hub, kept, prior)
    assert msa(await peer.send(a08("P7", name="ROE^FIRST")))[0] == "AA"
    assert msa(await peer.send(a40("P7", "P8", name="ROE^SECOND")))[0] == "AA"
    merge, update = await changes(hub)
    assert (merge["kind"], update["kind"]) == ("merge", "update")
    assert merge["prior"] == {"id": "P8", "issuer": ""} and merge["moved"] == 1

    status, body = await revert(hub, update["id"])
    assert status == 409 and f"change {merge['id']}" in body["detail"]

    status, body = await revert(hub, merge["id"])
    assert status == 200 and (body["kind"], body["prior"]) == ("merge", "P8")
    back = await studies(hub, PatientID="P8")
    assert list(back) == [prior.StudyInstanceUID]
    assert str(back[prior.StudyInstanceUID].PatientName) == "DOE^B"
    assert str((await metadata(hub, prior)).PatientName) == "DOE^B"
    others = (await metadata(hub, prior)).get("OtherPatientIDsSequence", [])
    assert "P8" not in [o.get("PatientID") for o in others]
    shown = await studies(hub, PatientID="P7")
    assert [str(s.PatientName) for s in shown.values()] == ["ROE^FIRST"]

    assert (await revert(hub, update["id"]))[0] == 200
    assert [str(s.PatientName) for s in (await studies(hub, PatientID="P7")).values()] == [
        "DOE^BABY"
    ]
    assert await studies(hub, PatientName="DOE^BABY")  # the matching columns are back too
    status, body = await revert(hub, update["id"])
    assert status == 409 and "reverted already" in body["detail"]
    assert (await revert(hub, 9999))[0] == 404
    listed = {c["id"]: c for c in await changes(hub)}
    assert listed[update["id"]]["reverted_by"] == "test-admin"
    reverts = await audited(hub, "patient.revert")
    assert [r.who for r in reverts] == ["test-admin", "test-admin"]


async def test_a_patient_merged_away_is_not_updated(hub, peer) -> None:
    await stow(hub, study("P8", "DOE^B"))
    assert msa(await peer.send(a40("P7", "P8")))[0] == "AA"
    ack = await peer.send(a08("P8", name="ROE^OTHER"))
    code, _, text = msa(ack)
    assert code == "AE" and "merged into P7" in text
    assert str(ack.segment("ERR")(3)).startswith("207^")
    assert await change_count(hub) == 1


@pytest.mark.parametrize(
    ("message", "code", "error", "reason"),
    [
        (adt("A08", "PV1||O"), "AE", "101", "PID segment missing"),
        (adt("A08", "PID|||||ROE^BABY"), "AE", "101", "PID-3"),
        (a08("P7", sex="X"), "AE", "103", "PID-8"),
        (a08("P7", birth="2026-06-02"), "AE", "102", "PID-7"),
        (adt("A40", "PID|||P7^^^HOSP^MR||ROE^BABY"), "AE", "101", "MRG segment missing"),
        (adt("A40", "MRG|P8", "PID|||P7"), "AE", "100", "MRG before PID"),
        (adt("A40", "PID|||P7", "MRG|"), "AE", "101", "MRG-1"),
        (a40("P7", "P7"), "AE", "207", "one patient"),
        (adt("A01", "PID|||P7"), "AR", "201", "ADT^A01 unsupported"),
        (adt("A08", "PID|||" + "9" * 65), "AE", "102", "not a patient ID"),
    ],
    ids=[
        "no-pid",
        "no-patient-id",
        "bad-sex",
        "bad-birth-date",
        "merge-without-mrg",
        "mrg-before-pid",
        "mrg-without-id",
        "merge-into-itself",
        "admit-event",
        "patient-id-too-long",
    ],
)
async def test_bad_patient_messages_get_a_nak_and_change_nothing(
    hub, peer, message, code, error, reason
) -> None:
    await stow(hub, study("P7", "DOE^BABY"))
    ack = await peer.send(message)
    got, _, text = msa(ack)
    assert (got, reason in text) == (code, True), text
    assert str(ack.segment("ERR")(3)).startswith(error + "^")
    assert await change_count(hub) == 0
    assert [str(s.PatientName) for s in (await studies(hub, PatientID="P7")).values()] == [
        "DOE^BABY"
    ]
    assert msa(await peer.send(a08("P7")))[0] == "AA"  # the connection goes on


async def test_the_groups_of_one_merge_apply_together_or_not_at_all(hub, peer) -> None:
    await stow(hub, study("P8", "DOE^B"), study("P9", "DOE^C"))
    both = adt(
        "A40",
        "PID|||P7^^^HOSP^MR||ROE^BABY",
        "MRG|P8^^^HOSP^MR",
        "PID|||P7^^^HOSP^MR||ROE^BABY",
        "MRG|P7^^^HOSP^MR",  # the survivor into itself: refused, and P8 stays as it was
    )
    assert msa(await peer.send(both))[0] == "AE"
    assert len(await studies(hub, PatientID="P8")) == 1
    assert await change_count(hub) == 0


async def _findscu(hub, tmp_path: Path, *keys: str, worklist_query: bool = False) -> list:
    out = tmp_path / ("mwl" if worklist_query else "find")
    out.mkdir(parents=True)
    level = ["-W"] if worklist_query else ["-S", "-k", "QueryRetrieveLevel=STUDY"]
    args = [*level, "-X", "-od", str(out), "-aec", "TESSERA"]
    for key in keys:
        args += ["-k", key]
    port = str(hub.app[DIMSE_KEY].server.port)
    proc = await asyncio.create_subprocess_exec(
        "findscu", *args, "127.0.0.1", port,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await proc.wait() == 0
    return [pydicom.dcmread(p) for p in await asyncio.to_thread(lambda: sorted(out.iterdir()))]


@pytest.mark.peers
async def test_c_find_and_the_modality_worklist_show_the_update(hub, peer, tmp_path: Path) -> None:
    if shutil.which("findscu") is None:
        pytest.skip("dcmtk is not installed")
    await allow_ae(hub.archive.engine, "FINDSCU", ["worklist", "find"], role="admin")
    ds = study("P7", "DOE^BABY")
    await stow(hub, ds)
    await peer.send(orm())
    assert msa(await peer.send(a08("P7")))[0] == "AA"

    (found,) = await _findscu(
        hub, tmp_path, "PatientID=P7", "PatientName", "PatientBirthDate", "StudyInstanceUID"
    )
    assert (found.StudyInstanceUID, str(found.PatientName)) == (ds.StudyInstanceUID, "ROE^BABY")
    assert found.PatientBirthDate == "20260602"
    (item,) = await _findscu(
        hub,
        tmp_path,
        "PatientID=P7",
        "PatientName",
        "ScheduledProcedureStepSequence[0].Modality=US",
        worklist_query=True,
    )
    assert str(item.PatientName) == "ROE^BABY"

    # A step ordered for the prior patient is the survivor's after the merge.
    prior_order = orm(placer="PL200", control_id="MSG2").replace("P7^^^HOSP", "P8^^^HOSP")
    assert msa(await peer.send(prior_order))[0] == "AA"
    assert msa(await peer.send(a40("P7", "P8", name="ROE^MERGED")))[0] == "AA"
    items = await _findscu(
        hub,
        tmp_path / "merged",
        "PatientID=P7",
        "PatientName",
        "AccessionNumber",
        "ScheduledProcedureStepSequence[0].Modality=US",
        worklist_query=True,
    )
    assert sorted((i.AccessionNumber, str(i.PatientName)) for i in items) == [
        ("ACC-PL100", "ROE^MERGED"),
        ("ACC-PL200", "ROE^MERGED"),
    ]


async def test_tessera_patients_lists_and_reverts(hub, peer) -> None:
    await stow(hub, study("P7", "DOE^BABY"))
    assert msa(await peer.send(a08("P7")))[0] == "AA"
    data = hub.settings.data_dir
    (line,) = (await asyncio.to_thread(tessera, data, "patients", "changes")).splitlines()
    assert "update P7" in line and "1 studies" in line and line.endswith("stands")
    (change,) = json.loads(await asyncio.to_thread(tessera, data, "patients", "changes", "--json"))
    said = await asyncio.to_thread(tessera, data, "patients", "revert", str(change["id"]))
    assert f"change {change['id']} (update of P7) reverted" in said
    assert [str(s.PatientName) for s in (await studies(hub, PatientID="P7")).values()] == [
        "DOE^BABY"
    ]
    with pytest.raises(subprocess.CalledProcessError) as refused:
        await asyncio.to_thread(tessera, data, "patients", "revert", str(change["id"]))
    assert "reverted already" in refused.value.stderr
    (record,) = await audited(hub, "patient.revert")
    assert record.role == "operator" and record.patient == "P7"
