"""Refusing receivers: dead letters visible through the REST API and the CLI, retry after a fix,
and retries for receivers that are only busy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aiohttp
import pytest
from forward_peers import dataset_sha256, forward_config, run_cli
from hubtest import free_port
from pydicom.data import get_testdata_file

from hub.archive import Source

pytestmark = pytest.mark.peers

SOURCE = Source(door="dimse", calling_ae="US_CART_3")
JPEG_US = Path(get_testdata_file("color3d_jpeg_baseline.dcm"))
CT = Path(get_testdata_file("CT_small.dcm"))


async def get_json(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


async def post_json(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.post(url) as resp:
        return resp.status, await resp.json()


async def only_task(hub, state: str):
    await hub.wait_until(lambda: _has(hub, state))
    (task,) = await hub.forwarder.queue.list(state=state)
    return task


async def _has(hub, state: str) -> bool:
    return bool(await hub.forwarder.queue.list(state=state))


async def test_refusal_is_a_dead_letter_until_fixed_and_retried(refusing_scp, hub_factory):
    refusing_scp.status = 0xA900  # data set does not match SOP class
    hub = await hub_factory(forward_config({"vna": refusing_scp.target()}, [{"target": "vna"}]))
    res = await hub.archive.ingest_file(CT, source=SOURCE)

    dead = await only_task(hub, "dead")
    assert dead.attempts == 1  # a permanent refusal is not retried
    assert dead.last_status == 0xA900
    assert "does not match SOP class" in dead.last_error

    status, body = await get_json(f"{hub.url}/api/forward/tasks?state=dead")
    assert status == 200
    assert [t["sop_uid"] for t in body["tasks"]] == [res.sop_instance_uid]
    assert body["counts"] == {"vna": {"dead": 1}}
    status, one = await get_json(f"{hub.url}/api/forward/tasks/{dead.id}")
    assert status == 200 and one["last_error"] == dead.last_error

    refusing_scp.status = 0x0000  # the receiver is fixed
    status, retried = await post_json(f"{hub.url}/api/forward/tasks/{dead.id}/retry")
    assert status == 200 and retried["state"] in ("pending", "in_flight", "done")
    done = await only_task(hub, "done")
    assert done.id == dead.id
    received = refusing_scp.received[res.sop_instance_uid]
    assert hashlib.sha256(received).hexdigest() == dataset_sha256(
        hub.archive.store.path(res.sha256)
    )


async def test_no_presentation_context_explained_then_cli_retry(
    storescp_factory, hub_factory, tmp_path, monkeypatch, capsys
):
    pacs = storescp_factory(accept_all=False)  # uncompressed transfer syntaxes only
    pacs.start()
    hub = await hub_factory(forward_config({"pacs": pacs.target()}, [{"target": "pacs"}]))
    res = await hub.archive.ingest_file(JPEG_US, source=SOURCE)

    dead = await only_task(hub, "dead")
    assert "no presentation context" in dead.last_error
    assert "JPEG Baseline" in dead.last_error and "does not transcode" in dead.last_error

    data_dir = hub.settings.data_dir
    code, out, _ = await run_cli(monkeypatch, capsys, data_dir, "list", "--state", "dead")
    assert code == 0
    assert res.sop_instance_uid in out and "no presentation context" in out

    pacs.stop()
    pacs.accept_all = True  # the PACS administrator enables JPEG
    pacs.start()
    code, out, _ = await run_cli(
        monkeypatch, capsys, data_dir, "retry", "--dead", "--target", "pacs"
    )
    assert code == 0 and "1 dead task(s) queued again" in out

    counts = await hub.wait_settled()
    assert counts == {"pacs": {"done": 1}}
    assert pacs.received() == {
        res.sop_instance_uid: dataset_sha256(hub.archive.store.path(res.sha256))
    }


async def test_out_of_resources_is_retried_with_backoff(refusing_scp, hub_factory):
    refusing_scp.status = 0xA701  # out of resources: try again later
    hub = await hub_factory(forward_config({"vna": refusing_scp.target()}, [{"target": "vna"}]))
    res = await hub.archive.ingest_file(CT, source=SOURCE)

    async def retried() -> bool:
        tasks = await hub.forwarder.queue.list(state="pending")
        return bool(tasks) and tasks[0].attempts >= 3

    await hub.wait_until(retried)
    (waiting,) = await hub.forwarder.queue.list(state="pending")
    assert waiting.last_status == 0xA701 and "out of resources" in waiting.last_error
    assert waiting.next_attempt_at > waiting.updated_at  # backing off, not spinning

    refusing_scp.status = 0x0000
    counts = await hub.wait_settled()
    assert counts == {"vna": {"done": 1}}
    assert res.sop_instance_uid in refusing_scp.received


async def test_gives_up_after_max_attempts(hub_factory):
    closed = {"type": "dimse", "host": "127.0.0.1", "port": free_port(), "called_ae": "GONE"}
    config = forward_config({"gone": closed}, [{"target": "gone"}])
    config["retry"] = {"base": 0.05, "multiplier": 1.0, "max_delay": 0.05, "max_attempts": 3}
    hub = await hub_factory(config)
    await hub.archive.ingest_file(CT, source=SOURCE)

    dead = await only_task(hub, "dead")
    assert dead.attempts == 3
    assert dead.last_error.startswith("gave up after 3 attempts")
    assert "Connection refused" in dead.last_error


async def test_cancel_pending_and_conflicts(hub_factory, monkeypatch, capsys):
    closed = {"type": "dimse", "host": "127.0.0.1", "port": free_port(), "called_ae": "GONE"}
    config = forward_config({"gone": closed}, [{"target": "gone"}])
    config["retry"] = {"base": 300}  # after the first failure both wait, pending
    hub = await hub_factory(config)
    await hub.archive.ingest_file(CT, source=SOURCE)
    await hub.archive.ingest_file(JPEG_US, source=SOURCE)

    async def both_waiting() -> bool:
        tasks = await hub.forwarder.queue.list(state="pending")
        return len(tasks) == 2 and all(t.attempts == 1 for t in tasks)

    await hub.wait_until(both_waiting)
    first, second = await hub.forwarder.queue.list()

    status, body = await post_json(f"{hub.url}/api/forward/tasks/{first.id}/cancel")
    assert status == 200 and body["state"] == "cancelled"
    status, body = await post_json(f"{hub.url}/api/forward/tasks/{first.id}/cancel")
    assert status == 409 and "it is cancelled" in body["detail"]
    status, body = await post_json(f"{hub.url}/api/forward/tasks/999999/retry")
    assert status == 404
    status, body = await get_json(f"{hub.url}/api/forward/tasks?state=bogus")
    assert status == 400 and "unknown state" in body["detail"]
    status, body = await get_json(f"{hub.url}/api/forward/tasks?limit=-1")
    assert status == 400 and "limit must be an integer" in body["detail"]
    status, body = await get_json(f"{hub.url}/api/forward/tasks/{'9' * 30}")
    assert status == 404 and "no forward task" in body["detail"]

    code, out, _ = await run_cli(
        monkeypatch, capsys, hub.settings.data_dir, "cancel", str(second.id)
    )
    assert code == 0 and f"task {second.id}: cancelled" in out
    code, _, err = await run_cli(
        monkeypatch, capsys, hub.settings.data_dir, "cancel", str(second.id)
    )
    assert code == 1 and "cannot cancel" in err
    assert {t.state for t in await hub.forwarder.queue.list()} == {"cancelled"}


async def test_odd_length_data_set_is_refused_before_sending(storescp_factory, hub_factory):
    pacs = storescp_factory()
    pacs.start()
    hub = await hub_factory(forward_config({"pacs": pacs.target()}, [{"target": "pacs"}]))
    # A deflated data set of odd length: pydicom-data ships one without the pad byte.
    res = await hub.archive.ingest_file(Path(get_testdata_file("image_dfl.dcm")), source=SOURCE)
    assert res.status == "stored"

    dead = await only_task(hub, "dead")
    assert "odd length" in dead.last_error
    assert pacs.received() == {}


FORWARD_TOML = """
[targets.pacs]
type = "dimse"
host = "127.0.0.1"
port = 11112
called_ae = "PACS"

[targets.vna]
type = "stow"
url = "https://vna.example/dicomweb"
token = "s3cret"

[[rules]]
name = "ultrasound"
target = "pacs"
match = { modality = "US", door = "telehealth" }

[[rules]]
name = "slides"
target = "vna"
match = { sop_class = "VLWholeSlideMicroscopyImageStorage" }
"""


async def test_targets_from_the_data_dir_file_are_listed_without_secrets(
    hub_factory, tmp_path, monkeypatch, capsys
):
    data_dir = tmp_path / "forwarding-hub"
    data_dir.mkdir()
    (data_dir / "forward.toml").write_text(FORWARD_TOML)
    hub = await hub_factory(forward_config({}, [], enabled=False), data_dir=data_dir)

    status, body = await get_json(f"{hub.url}/api/forward/targets")
    assert status == 200
    assert "s3cret" not in str(body)
    assert {t["name"]: t["type"] for t in body["targets"]} == {"pacs": "dimse", "vna": "stow"}
    assert body["rules"][1]["match"] == {"sop_class": ["1.2.840.10008.5.1.4.1.1.77.1.6"]}

    code, out, _ = await run_cli(monkeypatch, capsys, data_dir, "targets")
    assert code == 0
    assert "pacs: dimse PACS@127.0.0.1:11112 (no tasks)" in out
    assert "rule slides: sop_class=1.2.840.10008.5.1.4.1.1.77.1.6 -> vna" in out
    assert "s3cret" not in out


async def test_operator_sends_a_study_the_rules_did_not_route(
    storescp_factory, hub_factory, monkeypatch, capsys
):
    pacs = storescp_factory()
    pacs.start()
    rules = [{"target": "pacs", "match": {"modality": "MR"}}]  # the CT is not routed
    hub = await hub_factory(forward_config({"pacs": pacs.target()}, rules))
    res = await hub.archive.ingest_file(CT, source=SOURCE)
    assert await hub.forwarder.queue.list() == []

    status, body = await post_json(f"{hub.url}/api/forward/studies/{res.study_uid}?target=nope")
    assert status == 400 and "unknown target 'nope'" in body["detail"]
    status, body = await post_json(f"{hub.url}/api/forward/studies/1.2.3.4?target=pacs")
    assert status == 404
    status, body = await post_json(f"{hub.url}/api/forward/studies/{res.study_uid}?target=pacs")
    assert status == 202 and body == {"queued": 1, "target": "pacs"}

    counts = await hub.wait_settled()
    assert counts == {"pacs": {"done": 1}}
    stored = dataset_sha256(hub.archive.store.path(res.sha256))
    assert pacs.received() == {res.sop_instance_uid: stored}
    (task,) = await hub.forwarder.queue.list()
    assert task.rule == "manual"

    data_dir = hub.settings.data_dir
    (data_dir / "forward.json").write_text(json.dumps({"targets": {"pacs": pacs.target()}}))
    code, out, _ = await run_cli(
        monkeypatch, capsys, data_dir, "send", res.study_uid, "--target", "pacs"
    )
    assert code == 0 and "1 instance(s) of study" in out
    assert len(await hub.forwarder.queue.list(sop_uid=res.sop_instance_uid)) == 2


async def test_finished_tasks_are_purged_dead_letters_kept(refusing_scp, hub_factory):
    hub = await hub_factory(forward_config({"vna": refusing_scp.target()}, [{"target": "vna"}]))
    refusing_scp.status = 0xA900
    await hub.archive.ingest_file(CT, source=SOURCE)
    await only_task(hub, "dead")
    refusing_scp.status = 0x0000
    await hub.archive.ingest_file(JPEG_US, source=SOURCE)
    await only_task(hub, "done")

    assert await hub.forwarder.queue.purge_finished(older_than=3600) == 0
    assert await hub.forwarder.queue.purge_finished(older_than=0) == 1
    assert [t.state for t in await hub.forwarder.queue.list()] == ["dead"]
