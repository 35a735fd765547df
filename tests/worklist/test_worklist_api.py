"""Worklist REST API and the DIMSE service run by the aiohttp app: create, list with filters,
get, start/complete/cancel; the app's DIMSE SCP answers MWL queries for the same items."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import hub.worklist.model  # noqa: F401  (the table exists when the archive opens)
from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.archive import Archive
from hub.config import Settings
from hub.dimse import service as dimse_service
from hub.security.dimse_acl import allow_ae
from hub.worklist import api as worklist_api


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def app_url(tmp_path: Path) -> AsyncIterator[tuple[str, web.Application]]:
    settings = Settings(data_dir=tmp_path / "data", dimse_port=0, ae_title="TESSERA")
    archive = await Archive.open(settings)
    # dcmtk's default calling AE titles: the worklist query and the modality's store.
    await allow_ae(archive.engine, "FINDSCU", ["worklist"], role="admin")
    await allow_ae(archive.engine, "STORESCU", ["store"], role="admin")
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app[ARCHIVE_KEY] = archive
    worklist_api.setup(app)
    dimse_service.setup(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()
        await archive.close()


BABY = {
    "patient_name": "DOE^BABY",
    "patient_id": "P7",
    "modality": "US",
    "birth_date": "2026-06-01",
    "sex": "F",
    "weight_kg": 6.2,
    "size_m": 0.64,
    "station_ae": "POCUS1",
    "start": "2026-11-28T09:30:00",
    "requested_procedure_description": "Neonatal hip ultrasound",
    "requested_procedure_codes": [{"value": "HIPUS", "scheme": "99T", "meaning": "Hip US"}],
    "protocol_codes": ["HIP-1^99T^Hip protocol"],
}


async def test_create_list_get_and_transitions(app_url) -> None:
    url, _ = app_url
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/api/worklist", json=BABY) as resp:
            assert resp.status == 201, await resp.text()
            item = await resp.json()
        assert item["status"] == "SCHEDULED"
        assert item["age"] == "005M"  # from birth date to the scheduled date
        assert item["study_uid"] and item["accession"] and item["sps_id"]
        other = BABY | {"patient_name": "ROE^ANN", "patient_id": "P8", "modality": "SM"}
        async with http.post(url + "/api/worklist", json=other) as resp:
            assert resp.status == 201

        async with http.get(url + "/api/worklist", params={"modality": "US"}) as resp:
            assert [i["patient_id"] for i in (await resp.json())["items"]] == ["P7"]
        params = {"patient_name": "*e^*", "date": "20261128-20261128"}
        async with http.get(url + "/api/worklist", params=params) as resp:
            assert len((await resp.json())["items"]) == 2
        async with http.get(url + "/api/worklist", params={"date": "2026"}) as resp:
            assert resp.status == 200 and (await resp.json())["items"] == []

        async with http.get(url + f"/api/worklist/{item['id']}") as resp:
            assert (await resp.json())["study_uid"] == item["study_uid"]

        base = url + f"/api/worklist/{item['id']}"
        async with http.post(base + "/complete") as resp:
            assert resp.status == 409  # not started yet
        async with http.post(base + "/start") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "STARTED"
        async with http.post(base + "/complete") as resp:
            assert (await resp.json())["status"] == "COMPLETED"
        async with http.post(base + "/cancel") as resp:
            assert resp.status == 409
        async with http.get(url + "/api/worklist", params={"status": "completed"}) as resp:
            assert [i["id"] for i in (await resp.json())["items"]] == [item["id"]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"patient_id": "P1", "modality": "US"}, "patient_name"),
        (BABY | {"size_m": 64}, "size_m"),
        (BABY | {"sex": "X"}, "sex"),
        (BABY | {"birth_date": "31/12/2020"}, "birth_date"),
        (BABY | {"protocol_codes": ["HIP"]}, "code"),
        (BABY | {"accession": "A" * 17}, "accession"),
        (BABY | {"colour": "blue"}, "unknown fields"),
    ],
)
async def test_bad_input_is_a_400(app_url, body: dict, message: str) -> None:
    url, _ = app_url
    async with aiohttp.ClientSession() as http, http.post(url + "/api/worklist", json=body) as resp:
        assert resp.status == 400
        assert message in (await resp.json())["detail"]


async def test_unknown_item_and_bad_filters(app_url) -> None:
    url, _ = app_url
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/api/worklist/999") as resp:
            assert resp.status == 404
        async with http.post(url + "/api/worklist/abc/start") as resp:
            assert resp.status == 404
        async with http.get(url + "/api/worklist", params={"status": "DONE"}) as resp:
            assert resp.status == 400
        async with http.post(url + "/api/worklist", data=b"{nope") as resp:
            assert resp.status == 400


def test_every_route_is_named_in_its_area() -> None:
    app = web.Application()
    worklist_api.setup(app)
    names = [r.name for r in app.router.routes()]
    assert names and all(
        n and (n.startswith("worklist.read.") or n.startswith("worklist.write.")) for n in names
    )


@pytest.mark.peers
async def test_app_runs_the_dimse_scp_for_the_worklist(app_url, tmp_path: Path) -> None:
    if shutil.which("findscu") is None:
        pytest.skip("dcmtk is not installed")
    url, app = app_url
    async with aiohttp.ClientSession() as http, http.post(url + "/api/worklist", json=BABY) as resp:
        item = await resp.json()
    port = app[dimse_service.DIMSE_KEY].server.port
    out = tmp_path / "mwl"
    out.mkdir()
    proc = await asyncio.create_subprocess_exec(
        "findscu", "-W", "-X", "-od", str(out), "-aec", "TESSERA",
        "-k", "PatientName=DOE*", "-k", "StudyInstanceUID",
        "-k", "ScheduledProcedureStepSequence[0].Modality=US",
        "127.0.0.1", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await proc.wait() == 0
    from pydicom import dcmread

    answers = [dcmread(p) for p in await asyncio.to_thread(lambda: sorted(out.iterdir()))]
    assert [a.StudyInstanceUID for a in answers] == [item["study_uid"]]


@pytest.mark.peers
async def test_first_image_starts_the_step(app_url, tmp_path: Path) -> None:
    """An image made with image_attributes(item) and sent by storescu lands in the item's
    study, findable by its accession number, and the step becomes STARTED."""
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed")
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    from hub.archive.query import Query
    from hub.worklist import get_item, image_attributes

    url, app = app_url
    async with aiohttp.ClientSession() as http, http.post(url + "/api/worklist", json=BABY) as resp:
        created = await resp.json()
    archive = app[ARCHIVE_KEY]
    item = await get_item(archive.engine, created["id"])
    image = dcmread(get_testdata_file("CT_small.dcm"))
    image.update(image_attributes(item))
    image.SeriesInstanceUID = generate_uid()
    image.SOPInstanceUID = image.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "acquired.dcm"
    await asyncio.to_thread(image.save_as, path)
    port = app[dimse_service.DIMSE_KEY].server.port
    proc = await asyncio.create_subprocess_exec(
        "storescu", "-aec", "TESSERA", "127.0.0.1", str(port), str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await proc.wait() == 0

    studies = await archive.search(
        Query(level="STUDY", keys={"AccessionNumber": created["accession"]})
    )
    assert [s["0020000D"]["Value"][0] for s in studies] == [created["study_uid"]]
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + f"/api/worklist/{created['id']}") as resp,
    ):
        assert (await resp.json())["status"] == "STARTED"
