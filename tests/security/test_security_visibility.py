"""Row-level read limits: clinics see their own uploads, specialists see ultrasound. The
security package builds the scope; the archive applies it."""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from hub.archive import NotFound, Source
from hub.security.accounts import Principal
from hub.security.visibility import scope_of


def _who(user: str, role: str) -> Principal:
    return Principal(user=user, role=role, user_id=0)


async def _sops(archive, who, study, series=None, sop=None) -> set[str]:
    try:
        refs = await archive.instances(study, series, sop, scope=scope_of(who))
    except NotFound:
        return set()
    return {r.sop_instance_uid for r in refs}


async def test_read_limits_per_role(archive) -> None:
    ct = Path(get_testdata_file("CT_small.dcm"))
    us = Path(get_testdata_file("US1_J2KR.dcm"))
    for path, actor in ((ct, "clinic-a"), (us, "clinic-b")):
        result = await archive.ingest_file(path, source=Source(door="stow", actor=actor))
        assert result.ok, result.message
    ct_ds, us_ds = (pydicom.dcmread(p, stop_before_pixels=True) for p in (ct, us))
    ct_study, us_study = ct_ds.StudyInstanceUID, us_ds.StudyInstanceUID
    ct_sop, us_sop = ct_ds.SOPInstanceUID, us_ds.SOPInstanceUID

    clinic_a = _who("clinic-a", "clinic")
    assert await _sops(archive, clinic_a, ct_study) == {ct_sop}
    assert await _sops(archive, clinic_a, ct_study, ct_ds.SeriesInstanceUID, ct_sop) == {ct_sop}
    assert await _sops(archive, clinic_a, us_study) == set()

    specialist = _who("dr-us", "specialist")
    assert await _sops(archive, specialist, us_study) == {us_sop}
    assert await _sops(archive, specialist, ct_study) == set()

    for role in ("pathologist", "admin", "integration"):
        assert await _sops(archive, _who("x", role), ct_study) == {ct_sop}
        assert scope_of(_who("x", role)).everything

    assert await _sops(archive, None, ct_study) == set()
    assert await _sops(archive, _who("x", "no-such-role"), ct_study) == set()
    assert await _sops(archive, clinic_a, "1.2.3.404") == set()


async def test_a_study_others_add_to_opens_with_the_callers_part(archive) -> None:
    """An account that reads everything adds an instance to a clinic's study: the clinic still
    opens its study and series, with its own instance in them, and not the added one."""
    path = Path(get_testdata_file("CT_small.dcm"))
    first = pydicom.dcmread(path)
    second = copy.deepcopy(first)
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for ds, actor in ((first, "clinic-a"), (second, None)):
        out = Path(archive.settings.data_dir) / f"{actor}.dcm"
        ds.save_as(out, enforce_file_format=True)
        assert (await archive.ingest_file(out, source=Source("stow", actor=actor))).ok
    a = _who("clinic-a", "clinic")
    study, series = first.StudyInstanceUID, first.SeriesInstanceUID
    assert await _sops(archive, a, study) == {first.SOPInstanceUID}
    assert await _sops(archive, a, study, series) == {first.SOPInstanceUID}
    assert await _sops(archive, a, study, series, second.SOPInstanceUID) == set()
    both = {first.SOPInstanceUID, second.SOPInstanceUID}
    assert await _sops(archive, _who("p", "pathologist"), study) == both


@pytest.mark.parametrize("actor", ["clinic-b", "dr-us"])
async def test_no_write_reaches_into_a_study_its_sender_cannot_read(archive, actor) -> None:
    path = Path(get_testdata_file("CT_small.dcm"))
    assert (await archive.ingest_file(path, source=Source("stow", actor="clinic-a"))).ok
    other = pydicom.dcmread(path)
    other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out = Path(archive.settings.data_dir) / "other.dcm"
    other.save_as(out, enforce_file_format=True)
    role = "clinic" if actor == "clinic-b" else "specialist"
    source = Source("stow", actor=actor, scope=scope_of(_who(actor, role)))
    result = await archive.ingest_file(out, source=source)
    assert not result.ok and result.conflict
    assert other.StudyInstanceUID not in result.message
    assert await _sops(archive, None, other.StudyInstanceUID) == set()
    everything = await archive.instances(other.StudyInstanceUID)
    assert [r.actor for r in everything] == ["clinic-a"]


async def test_a_new_version_comes_only_from_the_sender_of_the_current_one(
    settings, tmp_path
) -> None:
    """Under the version policy a new version replaces the current one for every reader: from
    anyone but its sender it would take the object away from its owner."""
    from dataclasses import replace

    from hub.archive import Archive

    archive = await Archive.open(replace(settings, duplicate_policy="version"))
    try:
        path = Path(get_testdata_file("CT_small.dcm"))
        assert (await archive.ingest_file(path, source=Source("stow", actor="clinic-a"))).ok
        changed = pydicom.dcmread(path)
        changed.StudyDescription = "changed"
        out = tmp_path / "changed.dcm"
        changed.save_as(out, enforce_file_format=True)
        other = await archive.ingest_file(out, source=Source("stow", actor=None))
        assert not other.ok and other.conflict
        a = _who("clinic-a", "clinic")
        assert await _sops(archive, a, changed.StudyInstanceUID) == {changed.SOPInstanceUID}
        mine = await archive.ingest_file(out, source=Source("stow", actor="clinic-a"))
        assert mine.status == "version"
    finally:
        await archive.close()
