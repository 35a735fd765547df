"""Row-level read limits: clinics see their own uploads, specialists see ultrasound."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from hub.archive import Source
from hub.security.accounts import Principal
from hub.security.visibility import may_read, visible_sop_uids


def _who(user: str, role: str) -> Principal:
    return Principal(user=user, role=role, user_id=0)


async def test_read_limits_per_role(archive) -> None:
    ct = Path(get_testdata_file("CT_small.dcm"))
    us = Path(get_testdata_file("US1_J2KR.dcm"))
    for path, actor in ((ct, "clinic-a"), (us, "clinic-b")):
        result = await archive.ingest_file(path, source=Source(door="stow", actor=actor))
        assert result.ok, result.message
    ct_ds, us_ds = (pydicom.dcmread(p, stop_before_pixels=True) for p in (ct, us))
    ct_study, us_study = ct_ds.StudyInstanceUID, us_ds.StudyInstanceUID
    engine = archive.engine

    clinic_a = _who("clinic-a", "clinic")
    assert await may_read(engine, clinic_a, ct_study)
    assert await may_read(engine, clinic_a, ct_study, ct_ds.SeriesInstanceUID, ct_ds.SOPInstanceUID)
    assert not await may_read(engine, clinic_a, us_study)
    assert await visible_sop_uids(engine, clinic_a, ct_study) == {ct_ds.SOPInstanceUID}
    assert await visible_sop_uids(engine, clinic_a, us_study) == set()

    specialist = _who("dr-us", "specialist")
    assert await may_read(engine, specialist, us_study)
    assert not await may_read(engine, specialist, ct_study)

    for role in ("pathologist", "admin", "integration"):
        assert await may_read(engine, _who("x", role), ct_study)
        assert await visible_sop_uids(engine, _who("x", role), us_study) is None

    assert not await may_read(engine, None, ct_study)
    assert not await may_read(engine, _who("x", "no-such-role"), ct_study)
    assert not await may_read(engine, clinic_a, "1.2.3.404")


async def test_a_study_shared_with_another_clinic_opens_only_instance_by_instance(
    archive,
) -> None:
    """Two clinics upload instances of one study: each may open its own instance, neither the
    whole study (that would hand over the other clinic's objects)."""
    import copy

    from pydicom.uid import generate_uid

    path = Path(get_testdata_file("CT_small.dcm"))
    first = pydicom.dcmread(path)
    second = copy.deepcopy(first)
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for ds, actor in ((first, "clinic-a"), (second, "clinic-b")):
        out = Path(archive.settings.data_dir) / f"{actor}.dcm"
        ds.save_as(out, enforce_file_format=True)
        assert (await archive.ingest_file(out, source=Source("stow", actor=actor))).ok
    engine = archive.engine
    a = _who("clinic-a", "clinic")
    study, series = first.StudyInstanceUID, first.SeriesInstanceUID
    assert await may_read(engine, a, study, series, first.SOPInstanceUID)
    assert not await may_read(engine, a, study, series, second.SOPInstanceUID)
    assert not await may_read(engine, a, study)
    assert not await may_read(engine, a, study, series)
    assert await visible_sop_uids(engine, a, study) == {first.SOPInstanceUID}
    assert await may_read(engine, _who("p", "pathologist"), study)
