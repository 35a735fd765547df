"""The DIMSE peers (C-MOVE destinations) kept in the index: edited through /api/admin/peers and
``tessera dimse peer`` while the hub runs, versioned, audited, tested with a real C-ECHO, and
taken by the next C-MOVE without a restart (dcmtk movescu asks, a dcmtk storescp receives)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from dimse_peers import AE, HOST, StoreSCP, allow_test_aes, need_dcmtk, run
from hubtest import HubServer, free_port, running_hub
from pydicom import dcmread
from pydicom.data import get_testdata_file

from hub.archive import Source
from hub.archive.index import make_engine
from hub.config import DimseSettings, Settings
from hub.dimse.peers import settings_peer_source
from hub.dimse.service import DIMSE_KEY
from hub.security.tls import make_self_signed

pytestmark = pytest.mark.peers

REPO = Path(__file__).resolve().parents[2]
CT = Path(get_testdata_file("CT_small.dcm"))
STUDY = dcmread(CT, stop_before_pixels=True).StudyInstanceUID


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[HubServer]:
    need_dcmtk()
    async with running_hub(replace(settings, dimse_port=0, ae_title=AE)) as server:
        await allow_test_aes(server.archive)
        await server.archive.ingest_file(CT, source=Source(door="stow", actor="tests"))
        yield server


async def call(hub: HubServer, method: str, path: str, body: dict | None = None):
    async with hub.session() as http, http.request(method, hub.url + path, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def move_to(hub: HubServer, destination: str):
    port = hub.app[DIMSE_KEY].server.port
    return await run(
        "movescu", "-v", "-S", "-aem", destination, "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"StudyInstanceUID={STUDY}", "-aec", AE, HOST, str(port),
    )  # fmt: skip


async def audited(hub: HubServer, action: str) -> list[dict]:
    status, page = await call(hub, "GET", f"/api/admin/audit?action={action}")
    assert status == 200, page
    return [r for r in page["records"] if r["action"] == action]


def received(receiver: StoreSCP) -> set[str]:
    return {dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in receiver.files()}


async def test_a_peer_added_through_the_api_takes_the_next_move(
    hub: HubServer, receiver: StoreSCP
) -> None:
    before = await move_to(hub, receiver.ae)
    assert "0xa801" in before.out.lower() or "MoveDestinationUnknown" in before.out, before
    assert receiver.files() == []

    body = {"host": HOST, "port": receiver.port, "version": 0}
    status, saved = await call(hub, "PUT", f"/api/admin/peers/{receiver.ae}", body)
    assert (status, saved["version"]) == (200, 1), saved
    moved = await move_to(hub, receiver.ae)
    assert "Final Move Response (Success)" in moved.out, moved
    assert received(receiver) == {dcmread(CT, stop_before_pixels=True).SOPInstanceUID}

    status, removed = await call(hub, "DELETE", f"/api/admin/peers/{receiver.ae}?version=1")
    assert (status, removed["removed"]) == (200, True), removed
    after = await move_to(hub, receiver.ae)
    assert "0xa801" in after.out.lower() or "MoveDestinationUnknown" in after.out, after


async def test_echo_answers_success_or_why_not(hub: HubServer, receiver: StoreSCP) -> None:
    await call(hub, "PUT", f"/api/admin/peers/{receiver.ae}", {"host": HOST, "port": receiver.port})
    status, answer = await call(hub, "POST", f"/api/admin/peers/{receiver.ae}/echo")
    assert status == 200 and answer["ok"] is True, answer
    assert "Success" in answer["detail"], answer

    closed = free_port()  # nothing listens there
    await call(hub, "PUT", "/api/admin/peers/GONE", {"host": HOST, "port": closed})
    status, answer = await call(hub, "POST", "/api/admin/peers/GONE/echo")
    assert status == 200 and answer["ok"] is False, answer
    assert f"cannot reach GONE@{HOST}:{closed}" in answer["detail"], answer

    status, missing = await call(hub, "POST", "/api/admin/peers/NOBODY/echo")
    assert status == 404 and "NOBODY" in missing["detail"], missing
    echoes = await audited(hub, "admin.peer.echo")
    assert sorted((r["detail"]["name"], r["detail"]["ok"]) for r in echoes) == [
        ("GONE", False),
        (receiver.ae, True),
    ]


async def test_changes_are_versioned_validated_and_audited(hub: HubServer) -> None:
    status, first = await call(hub, "PUT", "/api/admin/peers/PACS", {"host": "pacs", "port": 104})
    assert (status, first["version"]) == (200, 1), first
    again = {"host": "pacs2", "port": 11112, "version": 0}  # "new", but it exists
    status, conflict = await call(hub, "PUT", "/api/admin/peers/PACS", again)
    assert status == 409 and "version 1" in conflict["detail"], conflict
    status, second = await call(hub, "PUT", "/api/admin/peers/PACS", {**again, "version": 1})
    assert (status, second["version"]) == (200, 2), second
    status, stale = await call(hub, "DELETE", "/api/admin/peers/PACS?version=1")
    assert status == 409, stale

    status, listing = await call(hub, "GET", "/api/admin/peers")
    assert status == 200
    (peer,) = listing["peers"]
    assert (peer["ae"], peer["host"], peer["port"], peer["version"]) == ("PACS", "pacs2", 11112, 2)
    assert peer["updated_by"] == "test-admin"

    refused = {
        "/api/admin/peers/" + "A" * 17: ({"host": "h", "port": 104}, "1 to 16 characters"),
        "/api/admin/peers/BAD%5CAE": ({"host": "h", "port": 104}, "backslash"),
        "/api/admin/peers/BAD%09AE": ({"host": "h", "port": 104}, "control"),
        "/api/admin/peers/ZERO": ({"host": "h", "port": 0}, "port"),
        "/api/admin/peers/HIGH": ({"host": "h", "port": 65536}, "port"),
        "/api/admin/peers/NOHOST": ({"port": 104}, "host"),
        "/api/admin/peers/EXTRA": ({"host": "h", "port": 104, "colour": "red"}, "colour"),
        "/api/admin/peers/TLS1": ({"host": "h", "port": 104, "tls": "yes"}, "$.tls"),
        "/api/admin/peers/TLS2": (
            {"host": "h", "port": 104, "tls": {"ca_file": "/no/such/ca.pem"}},
            "tls ca_file: '/no/such/ca.pem' is not a file on the hub",
        ),
        "/api/admin/peers/TLS3": (
            {"host": "h", "port": 104, "tls": {"ca_file": "ca.pem"}},
            "(an absolute path)",
        ),
        "/api/admin/peers/TLS4": (
            {"host": "h", "port": 104, "tls": {"cert_file": str(CT)}},
            "goes with its key",
        ),
        "/api/admin/peers/TLS5": (
            {"host": "h", "port": 104, "tls": {"ca_file": str(CT)}},
            "the certificates do not load",
        ),
    }
    for path, (body, reason) in refused.items():
        status, problem = await call(hub, "PUT", path, body)
        assert status == 400 and reason in problem["detail"], (path, problem)
    status, listing = await call(hub, "GET", "/api/admin/peers")
    assert [p["ae"] for p in listing["peers"]] == ["PACS"]

    status, missing = await call(hub, "DELETE", "/api/admin/peers/NOBODY")
    assert status == 404, missing
    status, _ = await call(hub, "DELETE", "/api/admin/peers/PACS?version=2")
    assert status == 200

    saves = await audited(hub, "admin.peer.save")
    assert [(r["detail"]["old"], r["detail"]["new"]) for r in reversed(saves)] == [
        (None, {"host": "pacs", "port": 104}),
        ({"host": "pacs", "port": 104}, {"host": "pacs2", "port": 11112}),
    ]
    (removal,) = await audited(hub, "admin.peer.remove")
    assert removal["detail"]["old"] == {"host": "pacs2", "port": 11112}
    assert removal["detail"]["new"] is None


async def test_tls_towards_a_peer_is_switched_on_kept_and_off(
    hub: HubServer, tmp_path: Path
) -> None:
    """A dcmtk storescp that speaks only TLS: reached once TLS is on (its certificate checked
    against the CA given), still after a change of port that leaves TLS out, and not once TLS
    is switched off."""
    cert, key = make_self_signed(tmp_path / "receiver-tls")
    receiver = StoreSCP(tmp_path / "received", free_port(), ae="TLSPEER", tls=(key, cert)).start()
    url = f"/api/admin/peers/{receiver.ae}"
    try:
        plain = {"host": HOST, "port": receiver.port}
        status, _ = await call(hub, "PUT", url, plain)
        assert status == 200
        status, answer = await call(hub, "POST", url + "/echo")
        assert answer["ok"] is False, answer

        status, saved = await call(hub, "PUT", url, {**plain, "tls": {"ca_file": str(cert)}})
        assert (status, saved["version"]) == (200, 2), saved
        status, answer = await call(hub, "POST", url + "/echo")
        assert answer["ok"] is True and "Success" in answer["detail"], answer
        moved = await move_to(hub, receiver.ae)
        assert "Final Move Response (Success)" in moved.out, moved
        assert received(receiver) == {dcmread(CT, stop_before_pixels=True).SOPInstanceUID}

        status, _ = await call(hub, "PUT", url, plain)  # TLS left out: kept
        status, listing = await call(hub, "GET", "/api/admin/peers")
        (peer,) = listing["peers"]
        assert (peer["version"], peer["tls"]["ca_file"], peer["tls"]["verify"]) == (
            3,
            str(cert),
            True,
        )
        status, answer = await call(hub, "POST", url + "/echo")
        assert answer["ok"] is True, answer

        status, _ = await call(hub, "PUT", url, {**plain, "tls": False})
        status, answer = await call(hub, "POST", url + "/echo")
        assert answer["ok"] is False, answer
        status, listing = await call(hub, "GET", "/api/admin/peers")
        assert listing["peers"][0]["tls"] is None
    finally:
        receiver.stop()
    saves = await audited(hub, "admin.peer.save")
    switched = [r["detail"]["new"].get("tls") for r in reversed(saves)]
    assert [bool(tls) for tls in switched] == [False, True, True, False]
    assert switched[1]["ca_file"] == str(cert)


async def test_the_settings_fill_the_peers_on_the_first_start_only(settings: Settings) -> None:
    seeded = replace(
        settings,
        dimse_port=0,
        dimse=DimseSettings(move_destinations={"OLDPACS": ["10.0.0.9", 104]}),
    )
    async with running_hub(seeded) as first:
        status, listing = await call(first, "GET", "/api/admin/peers")
        assert status == 200
        assert [(p["ae"], p["host"], p["port"], p["updated_by"]) for p in listing["peers"]] == [
            ("OLDPACS", "10.0.0.9", 104, "settings")
        ]
        status, _ = await call(first, "DELETE", "/api/admin/peers/OLDPACS")
        assert status == 200
    # The index counts from then on: starting again with the same settings brings nothing back.
    engine = make_engine(seeded.db_url)
    try:
        assert await settings_peer_source(engine, seeded).current() == {}
    finally:
        await engine.dispose()


async def tessera(data: Path, *argv: str) -> tuple[int, str]:
    """``tessera dimse peer ...`` as its own process, beside the running hub."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "dimse", "peer", *argv, "--data", str(data),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def test_the_command_line_edits_the_peers_of_the_running_hub(
    hub: HubServer, receiver: StoreSCP
) -> None:
    data = hub.settings.data_dir
    code, out = await tessera(data, "set", receiver.ae, HOST, str(receiver.port))
    assert code == 0 and f"peer {receiver.ae}: {HOST}:{receiver.port} (version 1)" in out, out
    moved = await move_to(hub, receiver.ae)  # another process's change, no restart
    assert "Final Move Response (Success)" in moved.out, moved
    assert len(receiver.files()) == 1

    code, out = await tessera(data, "list")
    assert code == 0 and receiver.ae in out and f"{HOST}:{receiver.port}" in out, out
    code, out = await tessera(data, "echo", receiver.ae)
    assert code == 0 and "Success" in out, out
    closed = free_port()
    code, out = await tessera(data, "set", "GONE", HOST, str(closed))
    assert code == 0, out
    code, out = await tessera(data, "echo", "GONE")
    assert code == 1 and f"cannot reach GONE@{HOST}:{closed}" in out, out

    cert, key = make_self_signed(data.parent / "tls-peer")
    secure = StoreSCP(data.parent / "secure", free_port(), ae="SECURE", tls=(key, cert)).start()
    try:
        code, out = await tessera(
            data, "set", "SECURE", HOST, str(secure.port), "--ca-file", str(cert)
        )
        assert code == 0 and f"peer SECURE: {HOST}:{secure.port} TLS (version 1)" in out, out
        code, out = await tessera(data, "echo", "SECURE")
        assert code == 0 and "Success" in out, out
        code, out = await tessera(data, "set", "SECURE", HOST, str(secure.port), "--no-tls")
        assert code == 0 and f"{secure.port} (version 2)" in out, out
        code, out = await tessera(data, "echo", "SECURE")
        assert code == 1, out
    finally:
        secure.stop()
    code, out = await tessera(
        data, "set", "SECURE", HOST, "104", "--no-tls", "--ca-file", str(cert)
    )
    assert code == 2 and "--no-tls takes no TLS files" in out, out
    code, out = await tessera(data, "set", "SECURE", HOST, "104", "--ca-file", "missing.pem")
    assert code == 2 and "is not a file on the hub" in out, out
    code, out = await tessera(data, "remove", "SECURE")
    assert code == 0, out

    code, out = await tessera(data, "set", "BAD\\AE", HOST, "104")
    assert code == 2 and "backslash" in out, out
    code, out = await tessera(data, "set", "PORT", HOST, "70000")
    assert code == 2 and "port" in out, out
    code, out = await tessera(data, "remove", "NOBODY")
    assert code == 1 and "no DIMSE peer 'NOBODY'" in out, out

    for ae in (receiver.ae, "GONE"):
        code, out = await tessera(data, "remove", ae)
        assert code == 0 and f"peer {ae}: removed" in out, out
    code, out = await tessera(data, "list")
    assert code == 0 and "(no peers)" in out, out
    status, listing = await call(hub, "GET", "/api/admin/peers")
    assert (status, listing["peers"]) == (200, [])
    saves = await audited(hub, "admin.peer.save")
    assert len(saves) == 4  # the receiver, GONE and SECURE twice
    assert {(r["role"], r["source"]) for r in saves} == {("operator", "cli")}
