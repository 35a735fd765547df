"""Who sees which worklist items, over REST and over the Modality Worklist (whole hub).

A clinic sees the items assigned to it (``clinic``) and those it created; administrators see
all. The clinic's MWL AE, bound to the clinic's account, sees the same items.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from hubtest import free_port
from pydicom import dcmread
from sqlalchemy import select

from hub.config import Settings
from hub.dimse.service import DIMSE_KEY
from hub.security.accounts import create_user, issue_token
from hub.security.audit_trail import _logs
from hub.security.dimse_acl import allow_ae
from hub.security.tables import audit_log

ITEM = {"patient_name": "DOE^JANE", "patient_id": "P1", "modality": "US"}


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", port=free_port(), dimse_port=0, database_url=database_url
    )


async def _clinic(engine, name: str) -> dict[str, str]:
    await create_user(engine, name, "clinic", None)
    return {"Authorization": f"Bearer {(await issue_token(engine, name))[1]}"}


async def _ids(http: aiohttp.ClientSession, url: str, headers: dict) -> list[str]:
    async with http.get(url + "/api/worklist", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return sorted(i["patient_id"] for i in (await resp.json())["items"])


async def _create(http: aiohttp.ClientSession, url: str, body: dict) -> dict:
    async with http.post(url + "/api/worklist", json=ITEM | body) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def test_a_clinic_reads_only_its_worklist(hub_server) -> None:
    url, engine = hub_server.url, hub_server.archive.engine
    clinic_a = await _clinic(engine, "clinicA")
    clinic_b = await _clinic(engine, "clinicB")
    async with hub_server.session() as http:  # an administrator
        await _create(http, url, {"patient_id": "UNASSIGNED"})
        assert await _ids(http, url, clinic_a) == []

        mine = await _create(http, url, {"patient_id": "FOR-A", "clinic": "clinicA"})
        theirs = await _create(http, url, {"patient_id": "FOR-B", "clinic": "clinicB"})
        assert mine["clinic"] == "clinicA"
        assert await _ids(http, url, clinic_a) == ["FOR-A"]
        assert await _ids(http, url, clinic_b) == ["FOR-B"]
        assert await _ids(http, url, hub_server.admin_headers) == ["FOR-A", "FOR-B", "UNASSIGNED"]

        async with http.get(f"{url}/api/worklist/{theirs['id']}", headers=clinic_a) as resp:
            assert resp.status == 404  # as if it did not exist
        async with http.get(f"{url}/api/worklist/{mine['id']}", headers=clinic_a) as resp:
            assert resp.status == 200
        async with http.post(
            url + "/api/worklist",
            json=ITEM | {"clinic": "nobody"},
            headers=hub_server.admin_headers,
        ) as resp:
            assert resp.status == 400  # a clinic that does not exist
            assert "nobody" in (await resp.json())["detail"]

        # A clinic starts a telehealth session or an upload only from its own items.
        for path, body in (
            ("/api/telehealth/sessions", {"worklist_item": theirs["id"]}),
            ("/api/uploads", {"filename": "a.svs", "size": 10, "worklist_item": theirs["id"]}),
        ):
            async with http.post(url + path, json=body, headers=clinic_a) as resp:
                assert resp.status == 400, (path, await resp.text())
        async with http.post(
            url + "/api/telehealth/sessions", json={"worklist_item": mine["id"]}, headers=clinic_a
        ) as resp:
            assert resp.status == 201, await resp.text()
        upload = {"filename": "a.svs", "size": 10, "worklist_item": mine["id"]}
        async with http.post(url + "/api/uploads", json=upload, headers=clinic_a) as resp:
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["fields"]["patient_id"] == "FOR-A"


@pytest.mark.peers
async def test_a_clinic_ae_finds_only_its_worklist(hub_server, tmp_path: Path) -> None:
    if shutil.which("findscu") is None:
        pytest.skip("dcmtk is not installed")
    url, engine = hub_server.url, hub_server.archive.engine
    await create_user(engine, "clinicA", "clinic", None)
    await create_user(engine, "clinicB", "clinic", None)
    await allow_ae(engine, "CLINICA_US", ["worklist"], user="clinicA")
    await allow_ae(engine, "RADIOLOGY", ["worklist"], role="admin")
    async with hub_server.session() as http:
        await _create(http, url, {"patient_id": "FOR-A", "clinic": "clinicA"})
        await _create(http, url, {"patient_id": "FOR-B", "clinic": "clinicB"})
        await _create(http, url, {"patient_id": "UNASSIGNED"})

    port = hub_server.app[DIMSE_KEY].server.port

    async def mwl(calling: str) -> list[str]:
        out_dir = tmp_path / calling
        out_dir.mkdir()
        proc = await asyncio.create_subprocess_exec(
            "findscu", "-W", "-aet", calling, "-aec", hub_server.settings.ae_title,
            "-X", "-od", str(out_dir), "-k", "PatientID", "127.0.0.1", str(port),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, out.decode()
        return sorted(str(dcmread(p).PatientID) for p in out_dir.iterdir())

    assert await mwl("CLINICA_US") == ["FOR-A"]
    assert await mwl("RADIOLOGY") == ["FOR-A", "FOR-B", "UNASSIGNED"]


async def _audited(hub_server, action: str) -> list:
    engine = hub_server.archive.engine
    await _logs[engine].flush()
    async with engine.connect() as conn:
        query = select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq)
        return (await conn.execute(query)).all()


async def test_a_step_is_edited_while_open_and_each_change_audited(hub_server) -> None:
    url, engine = hub_server.url, hub_server.archive.engine
    clinic_a = await _clinic(engine, "clinicA")
    await _clinic(engine, "clinicB")
    async with hub_server.session() as http:  # an administrator
        item = await _create(
            http, url, {"birth_date": "2026-06-01", "start": "2026-11-28T09:30:00"}
        )
        theirs = await _create(http, url, {"patient_id": "FOR-B", "clinic": "clinicB"})
        base = f"{url}/api/worklist/{item['id']}"
        change = {"patient_name": "DOE^JANE^M", "birth_date": "2025-11-28", "weight_kg": None}
        async with http.patch(base, json=change) as resp:
            assert resp.status == 200, await resp.text()
            edited = await resp.json()
        assert edited["patient_name"] == "DOE^JANE^M" and edited["age"] == "012M"
        kept = ("id", "study_uid", "accession", "sps_id", "status", "start_date", "start_time")
        assert {k: edited[k] for k in kept} == {k: item[k] for k in kept}

        (record,) = await _audited(hub_server, "worklist.update")
        assert record.patient == "P1" and record.study == item["study_uid"]
        detail = json.loads(record.detail)
        assert detail["old"] == {
            "patient_name": "DOE^JANE",
            "birth_date": "20260601",
            "age": "005M",
        }
        assert detail["new"] == {
            "patient_name": "DOE^JANE^M",
            "birth_date": "20251128",
            "age": "012M",
        }
        assert len(await _audited(hub_server, "worklist.create")) == 2

        for bad, reason in (({"sex": "X"}, "sex"), ({"colour": "red"}, "unknown fields")):
            async with http.patch(base, json=bad) as resp:
                assert resp.status == 400 and reason in (await resp.json())["detail"]
        async with http.patch(base, json={"clinic": "nobody"}) as resp:
            assert resp.status == 400 and "nobody" in (await resp.json())["detail"]
        async with http.patch(base, json={"weight_kg": "heavy"}) as resp:
            assert resp.status == 400
        async with http.patch(
            f"{url}/api/worklist/{theirs['id']}", json={"modality": "CT"}, headers=clinic_a
        ) as resp:
            assert resp.status == 403  # a clinic reads its steps; it does not edit them

        async with http.post(base + "/cancel") as resp:
            assert resp.status == 200
        (cancelled,) = await _audited(hub_server, "worklist.cancel")
        assert json.loads(cancelled.detail) == {"id": item["id"], "status": "CANCELLED"}
        async with http.patch(base, json={"modality": "CT"}) as resp:
            assert resp.status == 409 and "CANCELLED" in (await resp.json())["detail"]
        async with http.get(base) as resp:
            assert (await resp.json())["modality"] == "US"
