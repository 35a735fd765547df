"""The profile through the whole hub: reports sent by STOW-RS (dicomweb-client), read back
through /api/dose as JSON and CSV."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import aiohttp
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from dose_support import as_new_study, items, read

from hub.dose.estimate import load_k_table

MULTI = (
    "CT-RDSR-Siemens-Multi-1.dcm",
    "CT-RDSR-Siemens-Multi-2.dcm",
    "CT-RDSR-Siemens-Multi-3.dcm",
)


def stow(hub_server, datasets: list[pydicom.Dataset]) -> pydicom.Dataset:
    client = DICOMwebClient(url=f"{hub_server.url}/dicomweb", headers=hub_server.admin_headers)
    return client.store_instances(datasets)


async def test_profile_json_and_csv_after_stow(openrem: Path, hub_server) -> None:
    multi = [read(openrem / name) for name in MULTI]
    broken = as_new_study(read(openrem / MULTI[0]))
    del broken.ContentSequence
    answer = await asyncio.to_thread(stow, hub_server, [*multi, broken])
    assert len(answer.ReferencedSOPSequence) == 4 and "FailedSOPSequence" not in answer
    study_uid = multi[0].StudyInstanceUID
    async with hub_server.session() as session:
        async with session.get(f"{hub_server.url}/api/dose/patients") as resp:
            assert resp.status == 200
            patients = (await resp.json())["patients"]
        (patient,) = [p for p in patients if p["patient_id"] == multi[0].PatientID]
        assert (patient["events"], patient["studies"]) == (3, 1)
        base = f"{hub_server.url}/api/dose/patients/{patient['id']}"
        async with session.get(base, params={"at": "20180201"}) as resp:
            assert resp.status == 200
            profile = await resp.json()
        async with session.get(f"{base}/events.csv") as resp:
            assert resp.status == 200 and resp.content_type == "text/csv"
            exported = list(csv.DictReader(io.StringIO(await resp.text())))
        async with session.get(f"{hub_server.url}/api/dose/studies/{study_uid}") as resp:
            study = await resp.json()
        async with session.get(f"{hub_server.url}/api/dose/studies/{broken.StudyInstanceUID}") as r:
            broken_study = await r.json()
        async with session.get(base, params={"at": "2018-02-01"}) as resp:
            assert resp.status == 400 and "YYYYMMDD" in (await resp.json())["detail"]
        async with session.get(f"{hub_server.url}/api/dose/patients/999999") as resp:
            assert resp.status == 404
    k = load_k_table().k("chest", "adult")  # 60 years old, every event coded Chest
    expected = k * 236.09
    assert profile["table_id"] == load_k_table().id
    assert "not a measure of this patient's individual risk" in profile["notice"]
    windows = profile["cumulative_msv"]
    assert windows["12w"] == pytest.approx(expected)  # the study was on 2018-01-05
    assert windows["lifetime"] == pytest.approx(expected)
    assert [s["dlp_mgycm"] for s in profile["studies"]] == [pytest.approx(236.09)]
    assert not profile["alert"]["exceeded"]
    assert len(exported) == 3
    assert sum(float(row["dlp_mgycm"]) for row in exported) == pytest.approx(236.09)
    assert {row["region_row"] for row in exported} == {"chest"}
    assert all(float(row["k"]) == k for row in exported)
    assert study["dlp_mgycm"] == pytest.approx(236.09) and study["events"] == 3
    assert broken_study["events"] == 0
    assert broken_study["reports"][0]["warning"] == "the report has no content items"


async def test_windows_count_what_falls_within_them(openrem: Path, hub_server) -> None:
    ds = read(openrem / MULTI[2])
    await asyncio.to_thread(stow, hub_server, [ds])
    async with hub_server.session() as session:
        async with session.get(f"{hub_server.url}/api/dose/patients") as resp:
            (patient,) = (await resp.json())["patients"]
        base = f"{hub_server.url}/api/dose/patients/{patient['id']}"
        got = {}
        for at in ("20180104", "20180301", "20181231", "20220101", "20240101"):
            async with session.get(base, params={"at": at}) as resp:
                got[at] = (await resp.json())["cumulative_msv"]
    e = load_k_table().k("chest", "adult") * 236.09
    assert got["20180104"] == {"12w": 0, "1y": 0, "5y": 0, "lifetime": pytest.approx(e)}
    assert got["20180301"] == pytest.approx({"12w": e, "1y": e, "5y": e, "lifetime": e})
    assert got["20181231"] == pytest.approx({"12w": 0, "1y": e, "5y": e, "lifetime": e})
    assert got["20220101"] == pytest.approx({"12w": 0, "1y": 0, "5y": e, "lifetime": e})
    assert got["20240101"] == pytest.approx({"12w": 0, "1y": 0, "5y": 0, "lifetime": e})
    assert len(list(items(ds, "DCM", "113819"))) == 3


async def test_dose_routes_need_the_dose_permission(hub_server) -> None:
    from hub.security.accounts import create_user, issue_token

    await create_user(hub_server.archive.engine, "a-clinic", "clinic", None)
    _, secret = await issue_token(hub_server.archive.engine, "a-clinic")
    async with aiohttp.ClientSession() as session:
        url = f"{hub_server.url}/api/dose/patients"
        async with session.get(url, headers={"Authorization": f"Bearer {secret}"}) as resp:
            assert resp.status == 403
            assert (await resp.json())["permission"] == "dose.read"
        async with session.get(url) as resp:
            assert resp.status == 401
