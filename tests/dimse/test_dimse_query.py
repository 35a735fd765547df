"""C-FIND with dcmtk findscu: Patient Root and Study Root at every level, and the Modality
Worklist (findscu -W), answered from the same engine as QIDO-RS and the worklist tables."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from dimse_peers import DimseHub, findscu, retrieve_samples, run, store_with_storescu
from pydicom import dcmread

from hub.worklist import model

pytestmark = pytest.mark.peers

CONTROL = {"QueryRetrieveLevel", "SpecificCharacterSet"}


@pytest.fixture
async def stored(dimse_hub: DimseHub, tmp_path: Path) -> DimseHub:
    await store_with_storescu(dimse_hub.address, retrieve_samples(), tmp_path)
    return dimse_hub


def _expected():
    return [dcmread(s.path, stop_before_pixels=True) for s in retrieve_samples()]


def _keywords(ds) -> set[str]:
    return {e.keyword for e in ds}


async def test_patient_root_every_level(stored: DimseHub, tmp_path: Path) -> None:
    files = _expected()
    patients = await findscu(
        stored.address,
        "-P",
        ["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", "PatientBirthDate"],
        tmp_path / "p",
    )
    assert sorted(str(p.PatientID) for p in patients) == sorted({str(f.PatientID) for f in files})
    for p in patients:
        assert p.QueryRetrieveLevel == "PATIENT"
        assert _keywords(p) - CONTROL == {"PatientID", "PatientName", "PatientBirthDate"}

    nm = [f for f in files if f.PatientID == "8NM1"]
    studies = await findscu(
        stored.address,
        "-P",
        ["QueryRetrieveLevel=STUDY", "PatientID=8NM1", "StudyInstanceUID", "StudyDate",
         "NumberOfStudyRelatedInstances"],
        tmp_path / "st",
    )  # fmt: skip
    assert [s.StudyInstanceUID for s in studies] == [nm[0].StudyInstanceUID]
    assert studies[0].NumberOfStudyRelatedInstances == 2
    assert studies[0].StudyDate == nm[0].StudyDate

    series = await findscu(
        stored.address,
        "-P",
        ["QueryRetrieveLevel=SERIES", "PatientID=8NM1",
         f"StudyInstanceUID={nm[0].StudyInstanceUID}", "SeriesInstanceUID", "Modality"],
        tmp_path / "se",
    )  # fmt: skip
    assert [(s.SeriesInstanceUID, s.Modality) for s in series] == [(nm[0].SeriesInstanceUID, "NM")]

    images = await findscu(
        stored.address,
        "-P",
        ["QueryRetrieveLevel=IMAGE", "PatientID=8NM1",
         f"StudyInstanceUID={nm[0].StudyInstanceUID}",
         f"SeriesInstanceUID={nm[0].SeriesInstanceUID}", "SOPInstanceUID", "SOPClassUID"],
        tmp_path / "im",
    )  # fmt: skip
    assert sorted(i.SOPInstanceUID for i in images) == sorted(f.SOPInstanceUID for f in nm)
    assert all(i.QueryRetrieveLevel == "IMAGE" for i in images)


async def test_study_root_every_level(stored: DimseHub, tmp_path: Path) -> None:
    files = _expected()
    samples = [f for f in files if str(f.PatientName).startswith("CompressedSamples")]
    studies = await findscu(
        stored.address,
        "-S",
        ["QueryRetrieveLevel=STUDY", "PatientName=compressedsamples^*", "StudyInstanceUID",
         "ModalitiesInStudy", "AccessionNumber"],
        tmp_path / "st",
    )  # fmt: skip
    assert {s.StudyInstanceUID for s in studies} == {f.StudyInstanceUID for f in samples}
    assert all("AccessionNumber" in s for s in studies)  # requested, returned even if empty

    ranged = await findscu(
        stored.address,
        "-S",
        ["QueryRetrieveLevel=STUDY", "StudyDate=20040801-20040831", "StudyInstanceUID"],
        tmp_path / "range",
    )
    in_range = {f.StudyInstanceUID for f in files if "20040801" <= f.StudyDate <= "20040831"}
    assert {s.StudyInstanceUID for s in ranged} == in_range

    ct = next(f for f in files if f.Modality == "CT")
    series = await findscu(
        stored.address,
        "-S",
        ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={ct.StudyInstanceUID}",
         "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances"],
        tmp_path / "se",
    )  # fmt: skip
    assert [s.SeriesInstanceUID for s in series] == [ct.SeriesInstanceUID]
    assert series[0].NumberOfSeriesRelatedInstances == 1

    images = await findscu(
        stored.address,
        "-S",
        ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={ct.StudyInstanceUID}",
         f"SeriesInstanceUID={ct.SeriesInstanceUID}", "SOPInstanceUID", "InstanceNumber",
         "KVP"],  # not an indexed attribute: read from the stored metadata
        tmp_path / "im",
    )  # fmt: skip
    assert [(i.SOPInstanceUID, i.InstanceNumber, i.KVP) for i in images] == [
        (ct.SOPInstanceUID, ct.InstanceNumber, ct.KVP)
    ]


async def test_study_root_refuses_patient_level(stored: DimseHub, tmp_path: Path) -> None:
    result = await run(
        "findscu", "-v", "-S", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID",
        *stored.address,
    )  # fmt: skip
    assert "Final Find Response (Error: DataSetDoesNotMatchSOPClass)" in result.out, result
    assert (await run("echoscu", *stored.address)).rc == 0


async def test_an_integer_beyond_64_bits_is_refused_with_a_reason(
    stored: DimseHub, tmp_path: Path
) -> None:
    result = await run(
        "findscu", "-d", "-S", "-k", "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID",
        "-k", f"SeriesNumber={2**64}", *stored.address,
    )  # fmt: skip
    assert "DIMSE Status                  : 0xc000: Failed: Unable to process" in result.out, result
    assert f"'{2**64}' exceeds the 64-bit integer range" in result.out, result
    assert (await run("echoscu", *stored.address)).rc == 0


async def _schedule(hub: DimseHub, **fields) -> model.WorklistItem:
    base = dict(patient_name="DOE^JANE", patient_id="P1", modality="US", station_ae="POCUS1")
    return await model.create(hub.archive.engine, model.NewItem(**(base | fields)))


async def test_modality_worklist(dimse_hub: DimseHub, tmp_path: Path) -> None:
    today = datetime(2026, 11, 28, 9, 30)
    baby = await _schedule(
        dimse_hub,
        patient_name="DOE^BABY",
        patient_id="P7",
        birth_date="20260601",
        sex="F",
        weight_kg=6.2,
        size_m=0.64,
        start=today.isoformat(),
        requested_procedure_description="Neonatal hip ultrasound",
        protocol_codes=["HIP-US^99TESSERA^Hip ultrasound"],
    )
    await _schedule(dimse_hub, patient_name="ROE^RICHARD", start=today.isoformat())
    await _schedule(dimse_hub, patient_name="DOE^JOHN", modality="SM", start=today.isoformat())
    await _schedule(dimse_hub, patient_name="DOE^LATER", start="2026-12-24T10:00")
    done = await _schedule(dimse_hub, patient_name="DOE^DONE", start=today.isoformat())
    await model.transition(dimse_hub.archive.engine, done.id, "cancel")

    sps = "ScheduledProcedureStepSequence[0]"
    answers = await findscu(
        dimse_hub.address,
        "-W",
        ["PatientName=DOE*", "PatientID", "PatientAge", "PatientWeight", "PatientSize",
         "StudyInstanceUID", "AccessionNumber", "RequestedProcedureID",
         "RequestedProcedureDescription",
         f"{sps}.Modality=US", f"{sps}.ScheduledStationAETitle=POCUS1",
         f"{sps}.ScheduledProcedureStepStartDate=20261128-20261129",
         f"{sps}.ScheduledProcedureStepID", f"{sps}.ScheduledProcedureStepStatus",
         f"{sps}.ScheduledProtocolCodeSequence"],
        tmp_path / "mwl",
    )  # fmt: skip
    assert [a.PatientID for a in answers] == ["P7"]
    answer = answers[0]
    assert answer.StudyInstanceUID == baby.study_uid
    assert answer.AccessionNumber == baby.accession
    assert answer.PatientAge == "005M"
    assert float(answer.PatientWeight) == 6.2 and float(answer.PatientSize) == 0.64
    step = answer.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepID == baby.sps_id
    assert step.ScheduledProcedureStepStatus == "SCHEDULED"
    assert step.ScheduledProtocolCodeSequence[0].CodeValue == "HIP-US"
    assert "PatientBirthDate" not in answer  # only what was asked for


async def test_worklist_answers_in_utf8(dimse_hub: DimseHub, tmp_path: Path) -> None:
    await _schedule(dimse_hub, patient_name="MÜLLER^JÜRGEN", patient_id="P9")
    answers = await findscu(
        dimse_hub.address, "-W", ["PatientName=M*", "PatientID"], tmp_path / "mwl"
    )
    assert [str(a.PatientName) for a in answers] == ["MÜLLER^JÜRGEN"]
    assert answers[0].SpecificCharacterSet == "ISO_IR 192"


@pytest.mark.parametrize("separator", ["\\", ","])
async def test_modality_lists(stored: DimseHub, tmp_path: Path, separator: str) -> None:
    """A list of modalities with backslashes, or with commas (which no CS value can hold)."""
    files = _expected()
    wanted = {f.StudyInstanceUID for f in files if f.Modality in ("CT", "RTPLAN")}
    studies = await findscu(
        stored.address,
        "-S",
        ["QueryRetrieveLevel=STUDY", f"ModalitiesInStudy=CT{separator}RTPLAN",
         "StudyInstanceUID"],
        tmp_path / "st",
    )  # fmt: skip
    assert {s.StudyInstanceUID for s in studies} == wanted
    series = await findscu(
        stored.address,
        "-S",
        ["QueryRetrieveLevel=SERIES", f"Modality=CT{separator}RTPLAN", "SeriesInstanceUID"],
        tmp_path / "se",
    )
    assert {s.SeriesInstanceUID for s in series} == {
        f.SeriesInstanceUID for f in files if f.Modality in ("CT", "RTPLAN")
    }
