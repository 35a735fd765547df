"""The whole hub: a modality C-STOREs into the hub, the hub forwards to the PACS; the queue is
visible to an administrator and closed to others."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from forward_peers import FAST_RETRY, dataset_sha256
from hubtest import free_port
from pydicom.data import get_testdata_file
from sqlalchemy import select

from hub.config import Settings, sections
from hub.security.audit_trail import attach
from hub.security.dimse_acl import allow_ae
from hub.security.tables import audit_log

pytestmark = pytest.mark.peers


@pytest.fixture
def pacs(storescp_factory):
    scp = storescp_factory()
    scp.start()
    return scp


@pytest.fixture
def settings(tmp_path: Path, pacs) -> Settings:
    """The hub with its DIMSE door open and one rule: what US_CART sends goes to the PACS."""
    forward = {
        "targets": {"pacs": pacs.target()},
        "rules": [{"name": "cart", "target": "pacs", "match": {"calling_ae": "US_CART"}}],
        "retry": FAST_RETRY,
        "poll_interval": 0.5,
    }
    return Settings(
        data_dir=tmp_path / "hub",
        port=free_port(),
        dimse_port=free_port(),
        **sections(forward=forward),
    )


async def storescu(settings: Settings, calling_ae: str, files: list[Path]) -> None:
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk storescu is not installed")
    proc = await asyncio.create_subprocess_exec(
        "storescu", "-aet", calling_ae, "-aec", settings.ae_title,
        "127.0.0.1", str(settings.dimse_port), *map(str, files),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


@pytest.fixture(autouse=True)
async def modalities(hub_server) -> None:
    """The AEs these tests store from; the DIMSE port refuses AEs not on its allow-list."""
    for modality in ("US_CART", "OTHER_AE"):
        await allow_ae(hub_server.archive.engine, modality, ["store"], role="integration")


async def test_modality_to_hub_to_pacs(hub_server, pacs):
    files = [Path(get_testdata_file(n)) for n in ("CT_small.dcm", "MR_small.dcm")]
    await storescu(hub_server.settings, "US_CART", files)
    other = Path(get_testdata_file("SC_rgb_jpeg_dcmd.dcm"))
    await storescu(hub_server.settings, "OTHER_AE", [other])  # no rule for it: stays here

    async with hub_server.session() as http:
        for _ in range(600):
            async with http.get(f"{hub_server.url}/api/forward/tasks") as resp:
                assert resp.status == 200
                body = await resp.json()
            if body["counts"] == {"pacs": {"done": len(files)}}:
                break
            await asyncio.sleep(0.1)
        assert body["counts"] == {"pacs": {"done": len(files)}}

        async with http.get(f"{hub_server.url}/api/forward/targets") as resp:
            targets = await resp.json()
        assert targets["targets"][0]["tasks"] == {"done": len(files)}

    expected = {}
    for task in body["tasks"]:
        refs = await hub_server.archive.instances(task["study_uid"], sop_uid=task["sop_uid"])
        expected[task["sop_uid"]] = dataset_sha256(hub_server.archive.store.path(refs[0].sha256))
    assert pacs.received() == expected

    engine = hub_server.archive.engine
    await attach(engine, hub_server.settings.data_dir).flush()
    async with engine.connect() as conn:
        query = select(audit_log).where(audit_log.c.action == "forward.export")
        exports = (await conn.execute(query)).all()
    assert sorted(json.loads(r.detail)["sop"] for r in exports) == sorted(expected)
    assert {(r.outcome, r.source) for r in exports} == {("success", "pacs")}


async def test_queue_api_needs_the_forward_permissions(hub_server):
    import aiohttp

    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{hub_server.url}/api/forward/tasks") as resp:
            assert resp.status == 401
        async with anonymous.post(f"{hub_server.url}/api/forward/tasks/1/retry") as resp:
            assert resp.status == 401


async def test_operator_changes_are_audited(hub_server, pacs):
    pacs.stop()  # the PACS is down: the task waits
    await storescu(hub_server.settings, "US_CART", [Path(get_testdata_file("CT_small.dcm"))])

    async with hub_server.session() as http:
        for _ in range(600):
            async with http.get(f"{hub_server.url}/api/forward/tasks?state=pending") as resp:
                tasks = (await resp.json())["tasks"]
            if tasks and tasks[0]["attempts"] >= 1:
                break
            await asyncio.sleep(0.1)
        task = tasks[0]
        assert "Connection refused" in task["last_error"]
        url = f"{hub_server.url}/api/forward/tasks/{task['id']}/cancel"
        for _ in range(600):  # between attempts: the worker may have taken the task again
            async with http.post(url) as resp:
                if resp.status != 409 or "in_flight" not in await resp.text():
                    break
            await asyncio.sleep(0.05)
        assert resp.status == 200, await resp.text()

    engine = hub_server.archive.engine
    await attach(engine, hub_server.settings.data_dir).flush()
    async with engine.connect() as conn:
        query = select(audit_log).where(audit_log.c.action == "forward.cancel")
        rows = (await conn.execute(query)).all()
    assert len(rows) == 1
    assert rows[0].who == "test-admin" and rows[0].study == task["study_uid"]


async def test_ids_and_numbers_of_other_scripts_are_refused_not_crashed_on(hub_server):
    """ "²" and "٣" are digits to str.isdigit() but not to int()."""
    async with hub_server.session() as session:
        for path in ("/api/forward/tasks/²", "/api/forward/tasks/٣/cancel"):
            method = session.post if path.endswith("cancel") else session.get
            async with method(hub_server.url + path) as resp:
                assert resp.status == 404, path
                assert "no forward task" in (await resp.json())["detail"]
        for query in ("limit=²", "offset=٣"):
            async with session.get(f"{hub_server.url}/api/forward/tasks?{query}") as resp:
                assert resp.status == 400, query
                assert "must be an integer" in (await resp.json())["detail"]


async def test_configuration_edits_are_audited_with_old_and_new_and_no_secret(hub_server):
    base = f"{hub_server.url}/api/forward/targets/vna"
    first = {"type": "stow", "url": "http://127.0.0.1:1/dicomweb", "token": "s3cret-1"}
    second = {"type": "stow", "url": "http://127.0.0.1:2/dicomweb", "token": "s3cret-2"}
    async with hub_server.session() as http:
        for spec in (first, second):
            async with http.put(base, json=spec) as resp:
                assert resp.status == 200, await resp.text()
        async with http.delete(f"{base}?version=2") as resp:
            assert resp.status == 200, await resp.text()

    engine = hub_server.archive.engine
    await attach(engine, hub_server.settings.data_dir).flush()
    async with engine.connect() as conn:
        query = select(audit_log).where(audit_log.c.action.like("forward.target.%"))
        rows = (await conn.execute(query.order_by(audit_log.c.seq))).all()
    assert [r.action for r in rows] == ["forward.target.save"] * 2 + ["forward.target.remove"]
    assert {r.who for r in rows} == {"test-admin"}
    details = [json.loads(r.detail) for r in rows]
    assert details[0]["old"] is None and details[0]["new"]["url"] == first["url"]
    assert details[1]["old"]["url"] == first["url"] and details[1]["new"]["url"] == second["url"]
    assert details[2]["old"]["url"] == second["url"] and details[2]["new"] is None
    assert details[1]["new"]["token"] is True
    assert "s3cret" not in str(details)
