"""Targets and rules edited through the REST API while the hub runs: kept in the index,
versioned, validated, tested with C-ECHO, tried out with a dry run, and seen by every process."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from forward_peers import forward_config, run_cli
from hubtest import free_port
from pydicom.data import get_testdata_file

from hub.archive import Source
from hub.archive.index import make_engine
from hub.forward.configsource import ConfigSource

pytestmark = pytest.mark.peers

SOURCE = Source(door="stow", actor="clinic")
CT = Path(get_testdata_file("CT_small.dcm"))
MR = Path(get_testdata_file("MR_small.dcm"))


async def call(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_a_target_and_rule_added_at_run_time_route_the_next_object(
    storescp_factory, hub_factory
):
    pacs = storescp_factory()
    pacs.start()
    hub = await hub_factory(forward_config({}, []))
    before = await hub.archive.ingest_file(CT, source=SOURCE)
    assert await hub.forwarder.queue.list() == []

    status, body = await call("PUT", f"{hub.url}/api/forward/targets/pacs", pacs.target())
    assert (status, body["version"]) == (200, 1), body
    status, body = await call(
        "PUT",
        f"{hub.url}/api/forward/rules/mr-only",
        {"targets": ["pacs"], "match": {"modality": ["MR"]}},
    )
    assert (status, body["version"]) == (200, 1), body

    mr = await hub.archive.ingest_file(MR, source=SOURCE)
    await hub.archive.ingest_file(CT, source=SOURCE)  # a duplicate: stored before, not routed
    counts = await hub.wait_settled()
    assert counts == {"pacs": {"done": 1}}
    assert set(pacs.received()) == {mr.sop_instance_uid}
    assert before.sop_instance_uid not in pacs.received()

    status, listed = await call("GET", f"{hub.url}/api/forward/targets")
    assert status == 200
    assert [(t["name"], t["version"]) for t in listed["targets"]] == [("pacs", 1)]
    assert listed["rules"][0]["match"] == {"modality": ["MR"]}
    assert listed["revision"] == 3  # seeded, then two changes


async def test_edits_are_checked_and_versioned(hub_factory):
    hub = await hub_factory(forward_config({}, []))
    url = f"{hub.url}/api/forward"
    target = {"type": "dimse", "host": "127.0.0.1", "port": 11112, "called_ae": "PACS"}

    status, body = await call("PUT", f"{url}/rules/r1", {"targets": ["nowhere"]})
    assert status == 400 and "unknown target" in body["detail"], body
    status, body = await call("PUT", f"{url}/targets/pacs", {**target, "port": 70000})
    assert status == 400, body
    status, body = await call("PUT", f"{url}/targets/pacs", {**target, "called_ae": "A" * 17})
    assert status == 400, body
    status, body = await call("PUT", f"{url}/targets/pacs", {**target, "type": "fax"})
    assert status == 400, body

    assert (await call("PUT", f"{url}/targets/pacs", {**target, "version": 0}))[0] == 200
    status, body = await call("PUT", f"{url}/targets/pacs", {**target, "version": 0})
    assert status == 409 and "version 1" in body["detail"], body  # someone created it first
    assert body["conflict"] == "version"
    status, body = await call("PUT", f"{url}/targets/pacs", {**target, "port": 104, "version": 1})
    assert (status, body["version"]) == (200, 2), body
    status, body = await call("PUT", f"{url}/targets/pacs", {**target, "version": 1})
    assert status == 409, body  # a stale edit does not overwrite the newer one

    assert (await call("PUT", f"{url}/rules/r1", {"targets": ["pacs"]}))[0] == 200
    status, body = await call("DELETE", f"{url}/targets/pacs")
    assert status == 409 and "r1" in body["detail"], body
    assert body["conflict"] == "in_use"
    assert (await call("DELETE", f"{url}/rules/r1?version=1"))[0] == 200
    assert (await call("DELETE", f"{url}/targets/pacs?version=2"))[0] == 200
    status, body = await call("DELETE", f"{url}/targets/pacs")
    assert status == 404, body

    config = await hub.forwarder.source.current()
    assert config.targets == {} and config.rules == ()


async def test_a_stow_token_is_kept_and_never_shown(hub_factory):
    hub = await hub_factory(forward_config({}, []))
    url = f"{hub.url}/api/forward/targets/vna"
    spec = {"type": "stow", "url": "http://127.0.0.1:1/dicomweb", "token": "s3cret-token"}
    assert (await call("PUT", url, spec))[0] == 200
    renamed = {"type": "stow", "url": "http://127.0.0.1:2/dicomweb"}  # the token left out
    assert (await call("PUT", url, renamed))[0] == 200

    status, listed = await call("GET", f"{hub.url}/api/forward/targets")
    assert "s3cret" not in str(listed)
    assert listed["targets"][0]["token"] is True
    config = await hub.forwarder.source.current()
    assert config.targets["vna"].token == "s3cret-token"
    assert config.targets["vna"].url == "http://127.0.0.1:2/dicomweb"


async def test_a_token_named_by_its_variable_is_kept_when_the_target_is_saved_without_it(
    hub_factory,
):
    hub = await hub_factory(forward_config({}, []))
    hub.settings.environ = {"TESSERA_VNA_TOKEN": "from-the-environment"}
    url = f"{hub.url}/api/forward/targets/vna"
    spec = {"type": "stow", "url": "http://127.0.0.1:1/dicomweb", "token_env": "TESSERA_VNA_TOKEN"}
    assert (await call("PUT", url, spec))[0] == 200
    moved = {"type": "stow", "url": "http://127.0.0.1:2/dicomweb"}  # as the page saves it
    assert (await call("PUT", url, moved))[0] == 200
    config = await hub.forwarder.source.current()
    assert config.targets["vna"].token == "from-the-environment"
    replaced = {**moved, "token": "typed-in"}  # a token given replaces the variable
    assert (await call("PUT", url, replaced))[0] == 200
    assert (await hub.forwarder.source.current()).targets["vna"].token == "typed-in"


async def test_echo_tells_a_listening_peer_from_a_dead_one(storescp_factory, hub_factory):
    pacs = storescp_factory()
    pacs.start()
    dead = {**pacs.target(), "port": free_port()}
    hub = await hub_factory(forward_config({"pacs": pacs.target(), "dead": dead}, []))

    status, body = await call("POST", f"{hub.url}/api/forward/targets/pacs/echo")
    assert status == 200 and body["ok"] is True, body
    assert "Success" in body["detail"]
    status, body = await call("POST", f"{hub.url}/api/forward/targets/dead/echo")
    assert status == 200 and body["ok"] is False, body
    assert "cannot reach" in body["detail"]
    status, body = await call("POST", f"{hub.url}/api/forward/targets/nope/echo")
    assert status == 404, body


async def test_dry_run_says_where_the_newest_objects_would_go(hub_factory):
    targets = {"pacs": {"type": "stow", "url": "http://127.0.0.1:1/x"}}
    hub = await hub_factory(forward_config(targets, [], enabled=False))
    ct = await hub.archive.ingest_file(CT, source=SOURCE)
    mr = await hub.archive.ingest_file(MR, source=SOURCE)
    url = f"{hub.url}/api/forward/rules/dry-run"

    status, body = await call("POST", url, {"targets": ["pacs"], "match": {"modality": ["MR"]}})
    assert status == 200, body
    assert (body["examined"], body["matched"], body["per_target"]) == (2, 1, {"pacs": 1})
    sends = {o["sop_uid"]: o["sends"] for o in body["objects"]}
    assert sends == {
        mr.sop_instance_uid: [{"rule": "dry run", "target": "pacs"}],
        ct.sop_instance_uid: [],
    }

    status, body = await call("POST", url, {"targets": ["pacs"], "last": 1})
    assert [o["sop_uid"] for o in body["objects"]] == [mr.sop_instance_uid]  # newest first
    status, body = await call("POST", url, {})  # the saved rules: none yet
    assert (status, body["matched"]) == (200, 0)
    status, body = await call("POST", url, {"targets": ["elsewhere"]})
    assert status == 400, body
    status, body = await call("POST", url, {"targets": ["pacs"], "last": 0})
    assert status == 400, body
    assert await hub.forwarder.queue.list() == []  # a dry run queues nothing


async def test_another_process_sees_an_edit_without_a_restart(hub_factory):
    """A second reader of the same index (as another process or node has) routes by the new
    rule at its next object, and the settings it started with no longer count."""
    targets = {"pacs": {"type": "stow", "url": "http://127.0.0.1:1/x"}}
    hub = await hub_factory(forward_config(targets, [{"name": "all", "target": "pacs"}]))
    engine = make_engine(hub.settings.db_url)
    try:
        other = ConfigSource(engine, hub.settings)
        assert [r.name for r in (await other.current()).rules] == ["all"]

        edit = {"targets": ["pacs"], "match": {"modality": ["US"]}}
        assert (await call("PUT", f"{hub.url}/api/forward/rules/all", edit))[0] == 200
        (rule,) = (await other.current()).rules
        assert rule.modality == frozenset({"US"})
    finally:
        await engine.dispose()


async def test_the_command_line_edits_and_tests_targets_and_rules(
    storescp_factory, hub_factory, monkeypatch, capsys
):
    pacs = storescp_factory()
    pacs.start()
    hub = await hub_factory(forward_config({}, [], enabled=False))
    data_dir = hub.settings.data_dir
    where = ["--host", "127.0.0.1", "--port", str(pacs.port), "--called-ae", pacs.ae_title]

    code, out, err = await run_cli(monkeypatch, capsys, data_dir, "target", "set", "pacs", *where)
    assert (code, out.strip()) == (0, "target pacs: saved (version 1)"), err
    code, out, _ = await run_cli(monkeypatch, capsys, data_dir, "echo", "pacs")
    assert code == 0 and "Success" in out
    rule = ["rule", "set", "us", "--target", "pacs", "--modality", "US", "--door", "telehealth"]
    code, out, err = await run_cli(monkeypatch, capsys, data_dir, *rule)
    assert code == 0, err
    code, _, err = await run_cli(
        monkeypatch, capsys, data_dir, "rule", "set", "x", "--target", "no"
    )
    assert code == 1 and "unknown target" in err
    code, _, err = await run_cli(monkeypatch, capsys, data_dir, "target", "remove", "pacs")
    assert code == 1 and "rule(s) us" in err

    code, out, _ = await run_cli(monkeypatch, capsys, data_dir, "targets")
    assert "rule us: modality=US; door=telehealth -> pacs" in out
    (rule,) = (await hub.forwarder.source.current()).rules  # the running hub sees it
    assert rule.door == frozenset({"telehealth"})
