"""Split studies, duplicates, versions and patient conflicts, seen through DICOMweb."""

from __future__ import annotations

import copy
import random

import aiohttp
import pydicom
from dicomweb_support import STOW_TYPE, dicom_bytes, multipart_body
from hubtest import running_hub
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

STUDY = generate_uid()


def make_study() -> list[pydicom.Dataset]:
    """Three series of four CT images built from a real file, with the order keys varied."""
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    out = []
    # Series 2 arrives before series 1 in time; the third series has no number.
    for series_number, start in ((2, 90000), (1, 100000), (None, 80000)):
        series_uid = generate_uid()
        for i, number in enumerate((3, 1, 4, 2)):
            ds = copy.deepcopy(base)
            ds.StudyInstanceUID = STUDY
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            if series_number is None:
                ds.pop("SeriesNumber", None)
            else:
                ds.SeriesNumber = series_number
            ds.InstanceNumber = number
            ds.AcquisitionTime = f"{start + i * 10:06d}"
            out.append(ds)
    return out


async def stow(session: aiohttp.ClientSession, url: str, datasets: list[bytes]) -> dict:
    body = multipart_body([("application/dicom", d) for d in datasets])
    async with session.post(
        url + "/dicomweb/studies", data=body, headers={"Content-Type": STOW_TYPE}
    ) as r:
        return {"status": r.status, "body": await r.json()}


async def get_json(session: aiohttp.ClientSession, url: str):
    async with session.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def value(row: dict, tag: str):
    return row[tag]["Value"][0]


async def test_split_study_in_three_requests_with_a_duplicate(hub_server) -> None:
    datasets = make_study()
    encoded = [dicom_bytes(ds) for ds in datasets]
    shuffled = encoded[:]
    random.Random(7).shuffle(shuffled)
    requests = [shuffled[0:4], shuffled[4:8], shuffled[8:12] + [shuffled[0]]]
    async with hub_server.session() as session:
        statuses = [(await stow(session, hub_server.url, r))["status"] for r in requests]
        assert statuses == [200, 200, 200]
        studies = await get_json(session, hub_server.url + "/dicomweb/studies")
        assert len(studies) == 1
        assert value(studies[0], "00201206") == 3  # NumberOfStudyRelatedSeries
        assert value(studies[0], "00201208") == 12  # NumberOfStudyRelatedInstances
        series = await get_json(session, f"{hub_server.url}/dicomweb/studies/{STUDY}/series")
        numbers = [row.get("00200011", {}).get("Value", [None])[0] for row in series]
        assert numbers == [1, 2, None]
        for row in series:
            assert value(row, "00201209") == 4
        first = value(series[0], "0020000E")
        instances = await get_json(
            session, f"{hub_server.url}/dicomweb/studies/{STUDY}/series/{first}/instances"
        )
        assert [value(r, "00200013") for r in instances] == [1, 2, 3, 4]
    assert len([info async for info in hub_server.archive.store.iterate()]) == 12


async def test_instance_order_ties_fall_back_to_time_then_uid(hub_server) -> None:
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series_uid = generate_uid()
    made = []
    for t in ("120000", "110000", "110000"):
        ds = copy.deepcopy(base)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.pop("InstanceNumber", None)
        ds.AcquisitionTime = t
        made.append(ds)
    async with hub_server.session() as session:
        await stow(session, hub_server.url, [dicom_bytes(d) for d in made])
        rows = await get_json(
            session, f"{hub_server.url}/dicomweb/studies/{STUDY}/series/{series_uid}/instances"
        )
    got = [value(r, "00080018") for r in rows]
    tied = sorted(str(d.SOPInstanceUID) for d in made[1:])
    assert got == [*tied, str(made[0].SOPInstanceUID)]


async def test_same_uid_different_bytes_refused_and_original_kept(hub_server) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    original = dicom_bytes(ds)
    ds.PatientComments = "changed"
    changed = dicom_bytes(ds)
    async with hub_server.session() as session:
        assert (await stow(session, hub_server.url, [original]))["status"] == 200
        reply = await stow(session, hub_server.url, [changed])
        assert reply["status"] == 409
        assert reply["body"]["00081198"]["Value"][0]["00081197"]["Value"] == [0x0111]
        url = (
            f"{hub_server.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/"
            f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        )
        async with session.get(
            url,
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        ) as r:
            assert original in await r.read()


async def test_version_policy_keeps_both(settings) -> None:
    settings.duplicate_policy = "version"
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    original = dicom_bytes(ds)
    ds.PatientComments = "changed"
    changed = dicom_bytes(ds)
    async with running_hub(settings) as hub, hub.session() as session:
        assert (await stow(session, hub.url, [original]))["status"] == 200
        assert (await stow(session, hub.url, [changed]))["status"] == 200
        url = (
            f"{hub.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/"
            f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        )
        async with session.get(url) as r:
            assert changed in await r.read()
        assert len([info async for info in hub.archive.store.iterate()]) == 2  # first version kept


async def test_conflicting_patient_is_refused_and_recorded(hub_server) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    first = dicom_bytes(ds)
    original_patient = ds.PatientID
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "SOMEONE-ELSE"
    other = dicom_bytes(ds)
    async with hub_server.session() as session:
        assert (await stow(session, hub_server.url, [first]))["status"] == 200
        reply = await stow(session, hub_server.url, [other])
        assert reply["status"] == 409
        studies = await get_json(session, hub_server.url + "/dicomweb/studies")
        assert value(studies[0], "00201208") == 1
    from sqlalchemy import select

    from hub.archive.index import conflicts

    async with hub_server.archive.engine.connect() as conn:
        rows = (await conn.execute(select(conflicts))).all()
    assert [(r.kept_patient_id, r.offered_patient_id) for r in rows] == [
        (original_patient, "SOMEONE-ELSE")
    ]


async def test_a_new_version_is_served_at_once_even_after_its_frames_were_read(settings) -> None:
    settings.duplicate_policy = "version"
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    original = dicom_bytes(ds)
    ds.PixelData = bytes(len(ds.PixelData))
    changed = dicom_bytes(ds)
    frame_url = (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1"
    )
    accept = {"Accept": "application/octet-stream; transfer-syntax=*"}
    async with running_hub(settings) as hub, hub.session() as session:
        assert (await stow(session, hub.url, [original]))["status"] == 200
        async with session.get(hub.url + frame_url, headers=accept) as r:
            assert await r.read() == pydicom.dcmread(get_testdata_file("CT_small.dcm")).PixelData
        assert (await stow(session, hub.url, [changed]))["status"] == 200
        async with session.get(hub.url + frame_url, headers=accept) as r:
            assert await r.read() == ds.PixelData
