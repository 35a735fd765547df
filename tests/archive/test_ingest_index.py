"""What ingest leaves in the index: counts, first times, modalities, duplicates, versions and
the patient and study checks, all read from the one lookup query."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import select

import hub.worklist.model  # noqa: F401  (its table must exist before Archive.open)
from hub.archive import Archive, errors
from hub.archive.index import conflicts, series, studies
from hub.archive.model import Source
from hub.config import Settings

SOURCE = Source("import")


def _ct(study: str, serie: str, **changes) -> bytes:
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, serie
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
async def archive(settings: Settings):
    archive = await Archive.open(settings)
    yield archive
    await archive.close()


async def _row(archive: Archive, table, **where):
    async with archive.engine.connect() as conn:
        condition = [table.c[k] == v for k, v in where.items()]
        return (await conn.execute(select(table).where(*condition))).one()


async def test_counts_and_modalities(archive: Archive) -> None:
    study, first, second = generate_uid(), generate_uid(), generate_uid()
    for time in ("120000", "110000", "130000"):
        ct = _ct(study, first, AcquisitionDate="20240101", AcquisitionTime=time)
        assert (await archive.ingest_bytes(ct, source=SOURCE)).status == "stored"
    mr = _ct(study, second, Modality="MR", AcquisitionDate="", ContentDate="")
    assert (await archive.ingest_bytes(mr, source=SOURCE)).status == "stored"
    assert (await archive.ingest_bytes(mr, source=SOURCE)).status == "duplicate"
    row = await _row(archive, studies, study_uid=study)
    assert (row.num_instances, row.num_series, row.modalities) == (4, 2, "CT\\MR")
    row = await _row(archive, series, series_uid=first)
    assert (row.num_instances, row.first_time) == (3, "20240101110000.000000")
    row = await _row(archive, series, series_uid=second)
    assert (row.num_instances, row.first_time) == (1, "")


async def test_changed_object_is_refused_by_default(archive: Archive) -> None:
    data = _ct(generate_uid(), generate_uid())
    assert (await archive.ingest_bytes(data, source=SOURCE)).ok
    ds = dcmread(BytesIO(data))
    ds.PatientComments = "changed"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    result = await archive.ingest_bytes(out.getvalue(), source=SOURCE)
    assert (result.status, result.reason) == ("failed", errors.DUPLICATE_SOP_INSTANCE)


async def test_study_of_another_patient_and_series_of_another_study(archive: Archive) -> None:
    study, serie = generate_uid(), generate_uid()
    assert (await archive.ingest_bytes(_ct(study, serie, PatientID="A"), source=SOURCE)).ok
    other_patient = await archive.ingest_bytes(_ct(study, serie, PatientID="B"), source=SOURCE)
    assert other_patient.status == "failed" and other_patient.conflict
    assert "another patient" in other_patient.message
    async with archive.engine.connect() as conn:
        assert len((await conn.execute(select(conflicts))).all()) == 1
    other_study = await archive.ingest_bytes(
        _ct(generate_uid(), serie, PatientID="A"), source=SOURCE
    )
    # One answer for every UID clash, naming nothing stored (see test_security_scoping).
    assert other_study.status == "failed" and other_study.conflict
    assert other_study.message == "A UID of this object is in use by other stored objects"
    assert (await _row(archive, studies, study_uid=study)).num_instances == 1


async def test_values_longer_than_the_standard_allows_are_kept(archive: Archive) -> None:
    """Senders exceed the value lengths of PS3.5 (here a 100-character description, a patient
    name of 400 and an old-style date); the object is stored and indexed as sent, on SQLite and
    on PostgreSQL alike."""
    study = generate_uid()
    data = _ct(
        study,
        generate_uid(),
        StudyDescription="D" * 100,
        PatientName="N" * 400,
        StudyDate="1997.04.24",
    )
    result = await archive.ingest_bytes(data, source=SOURCE)
    assert result.ok, result.message
    row = await _row(archive, studies, study_uid=study)
    assert row.description == "D" * 100 and row.study_date == "1997.04.24"
