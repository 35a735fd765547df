"""What one user stores never shows to, or locks out, another: patients and studies are kept
apart by sender, a write into a study the writer cannot read is refused like any UID clash,
and readers keep reading their own part of a study others add to. Real STOW-RS, QIDO-RS and
WADO-RS against the whole hub."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from hub.security.accounts import create_user, issue_token

CT = Path(get_testdata_file("CT_small.dcm"))
BOUNDARY = "scoping-test"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
PATIENT_NAME, BIRTH_DATE, STUDY_DESCRIPTION = "00100010", "00100030", "00081030"
USERS = {
    "clinic-a": "clinic",
    "clinic-b": "clinic",
    "dr-path": "pathologist",
    "dr-us": "specialist",
    "feed": "integration",
}


def ct(**attributes: str) -> bytes:
    """CT_small with fresh UIDs (unless given) and the given attributes."""
    ds = pydicom.dcmread(CT)
    ds.StudyInstanceUID = attributes.pop("StudyInstanceUID", None) or generate_uid()
    ds.SeriesInstanceUID = attributes.pop("SeriesInstanceUID", None) or generate_uid()
    sop = attributes.pop("SOPInstanceUID", None) or generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
    for keyword in ("PatientBirthDate", "AccessionNumber", "StudyDescription"):
        ds.pop(keyword, None)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    from io import BytesIO

    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def uids(data: bytes) -> tuple[str, str, str]:
    from io import BytesIO

    ds = pydicom.dcmread(BytesIO(data), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


class Users:
    def __init__(self, url: str, http: aiohttp.ClientSession, tokens: dict[str, str]) -> None:
        self.url, self.http, self.tokens = url, http, tokens

    def _auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def stow(self, user: str, data: bytes, study: str | None = None) -> tuple[int, dict]:
        body = (
            f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + data
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )
        url = self.url + "/dicomweb/studies" + (f"/{study}" if study else "")
        headers = {**self._auth(user), "Content-Type": STOW_TYPE}
        async with self.http.post(url, data=body, headers=headers) as r:
            return r.status, json.loads(await r.text() or "{}")

    async def get(self, user: str, path: str, accept: str | None = None) -> tuple[int, bytes]:
        headers = self._auth(user) | ({"Accept": accept} if accept else {})
        async with self.http.get(self.url + "/dicomweb" + path, headers=headers) as r:
            return r.status, await r.read()

    async def rows(self, user: str, path: str) -> list[dict]:
        status, body = await self.get(user, path)
        assert status == 200, (user, path, status, body[:300])
        return json.loads(body)


@pytest.fixture
async def users(hub_server):
    engine = hub_server.archive.engine
    tokens = {}
    for user, role in USERS.items():
        await create_user(engine, user, role, None)
        tokens[user] = (await issue_token(engine, user))[1]
    async with aiohttp.ClientSession() as http:
        yield Users(hub_server.url, http, tokens)


def value(row: dict, tag: str):
    return (row.get(tag) or {}).get("Value", [None])[0]


def sops_in(multipart: bytes) -> set[str]:
    from io import BytesIO

    found = set()
    for chunk in multipart.split(b"\r\n--")[:-1]:
        if b"DICM" in chunk:
            part = chunk[chunk.index(b"DICM") - 128 :]
            found.add(str(pydicom.dcmread(BytesIO(part), stop_before_pixels=True).SOPInstanceUID))
    return found


# -- patients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("issuer", [None, "HOSPITAL-1"])
async def test_a_guessed_patient_id_does_not_show_another_clinics_patient(users, issuer) -> None:
    qualified = {"IssuerOfPatientID": issuer} if issuer else {}
    theirs = ct(
        PatientID="MRN-2002", PatientName="Bravo^Secret", PatientBirthDate="19550505", **qualified
    )
    mine = ct(PatientID="MRN-2002", PatientName="Guess^Name", **qualified)
    assert (await users.stow("clinic-b", theirs))[0] == 200
    assert (await users.stow("clinic-a", mine))[0] == 200
    my_study = uids(mine)[0]

    for level in ("studies", "series", "instances"):
        rows = await users.rows("clinic-a", f"/{level}?StudyInstanceUID={my_study}")
        assert rows and all(value(r, PATIENT_NAME) == {"Alphabetic": "Guess^Name"} for r in rows)
        assert all(BIRTH_DATE not in r for r in rows), level
        assert b"Bravo" not in json.dumps(rows).encode()
    assert await users.rows("clinic-a", "/studies?PatientName=Bravo*") == []
    assert await users.rows("clinic-a", "/studies?PatientBirthDate=19550505") == []
    (row,) = await users.rows("clinic-a", "/studies?PatientID=MRN-2002")
    assert value(row, "0020000D") == my_study

    # Readers of everything see each study with the patient its own objects name.
    by_study = {
        value(r, "0020000D"): value(r, PATIENT_NAME)["Alphabetic"]
        for r in await users.rows("dr-path", "/studies?PatientID=MRN-2002")
    }
    assert by_study == {my_study: "Guess^Name", uids(theirs)[0]: "Bravo^Secret"}


# -- studies -----------------------------------------------------------------------------------
async def test_a_write_into_another_clinics_study_is_refused_like_a_uid_clash(users) -> None:
    theirs = ct(
        PatientID="B-1",
        PatientName="Bravo^Owner",
        StudyDescription="Private description",
        AccessionNumber="ACC-B-1",
        ReferringPhysicianName="Referrer^Bravo",
    )
    study, series, sop = uids(theirs)
    assert (await users.stow("clinic-b", theirs))[0] == 200

    # Into clinic B's study, by its UID alone, and into clinic B's series.
    intruders = {
        "study": ct(PatientID="B-1", StudyInstanceUID=study),
        "series": ct(PatientID="B-1", StudyInstanceUID=study, SeriesInstanceUID=series),
        "other patient": ct(PatientID="A-9", StudyInstanceUID=study),
        "series of another study": ct(PatientID="A-9", SeriesInstanceUID=series),
        "same SOP instance": ct(PatientID="A-9", SOPInstanceUID=sop),
    }
    answers = {}
    for name, data in intruders.items():
        status, body = await users.stow("clinic-a", data)
        assert status == 409, (name, body)
        (failed,) = body["00081198"]["Value"]
        answers[name] = (value(failed, "00081197"), value(failed, "00000902"))
    # ... with one answer that names nothing of what is stored.
    assert len(set(answers.values())) == 1, answers
    assert not any(uid in text for _, text in answers.values() for uid in (study, series, sop)), (
        answers
    )
    # Clinic A's own UID clash inside its own study gets the same answer.
    mine = ct(PatientID="A-1")
    assert (await users.stow("clinic-a", mine))[0] == 200
    clash = ct(PatientID="A-2", SeriesInstanceUID=uids(mine)[1])
    status, body = await users.stow("clinic-a", clash)
    (failed,) = body["00081198"]["Value"]
    assert status == 409 and (value(failed, "00081197"), value(failed, "00000902")) in set(
        answers.values()
    )
    # The same bytes clinic B stored: not "already stored" (that would confirm them).
    status, body = await users.stow("clinic-a", theirs)
    (failed,) = body["00081198"]["Value"]
    assert status == 409 and (value(failed, "00081197"), value(failed, "00000902")) in set(
        answers.values()
    )

    # Nothing of clinic B's study reached clinic A, and clinic B still reads it whole.
    assert await users.rows("clinic-a", f"/studies?StudyInstanceUID={study}") == []
    for path in (f"/studies/{study}/metadata", f"/studies/{study}/series/{series}/metadata"):
        assert (await users.get("clinic-a", path))[0] == 404
        (row,) = await users.rows("clinic-b", path)
        assert value(row, "00080018") == sop
    (row,) = await users.rows("clinic-b", f"/studies?StudyInstanceUID={study}")
    assert value(row, STUDY_DESCRIPTION) == "Private description"
    assert value(row, "00201208") == 1


async def test_a_reader_keeps_its_study_when_others_add_to_it(users) -> None:
    """An integration account (which reads everything) adds to a clinic's study: the clinic
    still opens the study, series and metadata, and sees only its own objects in them."""
    clinic = ct(PatientID="C-1", PatientName="Own^Patient", StudyDescription="Clinic study")
    study, series, clinic_sop = uids(clinic)
    assert (await users.stow("clinic-a", clinic))[0] == 200
    added = ct(
        PatientID="C-1",
        PatientName="Own^Patient",
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        StudyDescription="Added by the pathologist",
        AccessionNumber="ACC-PATH",
    )
    status, body = await users.stow("feed", added)  # an integration account reads everything
    assert status == 200, body
    added_sop = uids(added)[2]
    other_series = ct(PatientID="C-1", StudyInstanceUID=study, Modality="MR")
    assert (await users.stow("feed", other_series))[0] == 200

    (row,) = await users.rows("clinic-a", f"/studies?StudyInstanceUID={study}")
    assert value(row, STUDY_DESCRIPTION) == "Clinic study"
    assert "00080050" not in row or value(row, "00080050") in (None, "")
    assert value(row, "00201208") == 1 and value(row, "00201206") == 1
    assert row["00080061"]["Value"] == ["CT"]
    assert (
        await users.rows("clinic-a", f"/studies?StudyInstanceUID={study}&ModalitiesInStudy=MR")
        == []
    )
    assert len(await users.rows("clinic-a", "/studies?ModalitiesInStudy=CT\\MR")) == 1
    for path in (f"/studies/{study}/metadata", f"/studies/{study}/series/{series}/metadata"):
        rows = await users.rows("clinic-a", path)
        assert {value(r, "00080018") for r in rows} == {clinic_sop}, path
    everything = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    for path in (f"/studies/{study}", f"/studies/{study}/series/{series}"):
        status, body = await users.get("clinic-a", path, everything)
        assert status == 200 and sops_in(body) == {clinic_sop}, path
    rows = await users.rows("clinic-a", f"/studies/{study}/instances")
    assert {value(r, "00080018") for r in rows} == {clinic_sop}
    path = f"/studies/{study}/series/{series}/instances/{added_sop}/metadata"
    assert (await users.get("clinic-a", path))[0] == 404
    # The pathologist sees both objects.
    rows = await users.rows("dr-path", f"/studies/{study}/metadata")
    assert {value(r, "00080018") for r in rows} == {clinic_sop, added_sop, uids(other_series)[2]}
