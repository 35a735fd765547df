"""``GET /api/admin/system`` on a whole hub: its figures follow what happens to it (an object
stored by STOW-RS, an error logged, an association held open), and only administrators may ask."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from hubtest import HubServer, free_port, running_hub
from pynetdicom import AE as PeerAE
from pynetdicom.sop_class import Verification

from hub.config import Settings
from hub.forward.states import STATES
from hub.security.accounts import create_user, issue_token
from hub.security.dimse_acl import allow_ae

BOUNDARY = "tessera-system-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
CALLING_AE = "SYSTEMSCU"


@pytest.fixture
async def hub(tmp_path: Path, database_url: str | None, store_on_s3: dict[str, str]):
    settings = Settings(
        data_dir=tmp_path / "data",
        port=free_port(),
        dimse_port=0,
        database_url=database_url,
        **store_on_s3,
    )
    async with running_hub(settings) as server:
        yield server


async def system(hub: HubServer, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession(headers=headers or hub.admin_headers) as http,
        http.get(f"{hub.url}/api/admin/system") as response,
    ):
        return response.status, await response.json(content_type=None)


async def report(hub: HubServer) -> dict:
    status, body = await system(hub)
    assert status == 200, body
    return body


async def stow(hub: HubServer, data: bytes) -> None:
    body = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
    body += f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = {"Content-Type": STOW_TYPE}
    async with (
        hub.session() as http,
        http.post(f"{hub.url}/dicomweb/studies", data=body, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()


async def test_counts_and_stored_bytes_follow_a_stored_object(hub: HubServer, corpus: Path):
    before = await report(hub)
    assert before["versions"]["tessera_hub"] and before["versions"]["pydicom"]
    assert before["versions"]["index_server"]
    assert before["storage"]["kind"] == hub.settings.storage.backend
    assert before["index"]["engine"] in ("sqlite", "postgresql")
    assert before["index"]["size_bytes"] > 0
    assert before["storage"]["data_folder_free_bytes"] > 0
    assert set(before["forwarding"]) >= set(STATES)
    assert set(before["jobs"]) >= {"queued", "running", "done", "failed"}
    (node,) = [n for n in before["nodes"] if n["this_node"]]
    assert node["alive"] and node["id"] == before["node"]

    data = (corpus / "us" / "US-RGB-8-epicard.dcm").read_bytes()
    await stow(hub, data)
    after = await report(hub)
    for level in ("studies", "series", "instances"):
        assert after["index"][level] == before["index"][level] + 1, level
    assert after["storage"]["objects"] == before["storage"]["objects"] + 1
    assert after["storage"]["object_bytes"] == before["storage"]["object_bytes"] + len(data)


async def test_an_error_a_hub_logger_logs_is_among_the_recent_errors(hub: HubServer):
    marker = f"the system test's own failure {uuid.uuid4().hex}"
    logging.getLogger("hub.forward.worker").warning("%s (a warning only)", marker)
    try:
        raise OSError("disk on fire")
    except OSError:
        logging.getLogger("hub.forward.worker").exception(marker)
    errors = (await report(hub))["recent_errors"]
    shown = [e for e in errors if marker in e["message"]]
    assert len(shown) == 1, errors  # the warning is not kept
    (error,) = shown
    assert error["logger"] == "hub.forward.worker" and error["level"] == "ERROR"
    assert error["message"] == f"{marker}: OSError: disk on fire"
    assert error["time"].startswith(time.strftime("%Y-", time.gmtime()))
    assert errors.index(error) == 0  # newest first


async def open_associations_become(hub: HubServer, wanted: int) -> None:
    """Wait until the report counts ``wanted`` open associations (the SCP marks one established
    just after it has sent its acceptance, so the peer may be a moment ahead of it)."""
    deadline = time.monotonic() + 60
    while (seen := (await report(hub))["dimse"]["open_associations"]) != wanted:
        assert time.monotonic() < deadline, f"{seen} open associations, not {wanted}"
        await asyncio.sleep(0.1)


async def test_an_open_association_is_counted_until_released(hub: HubServer):
    await allow_ae(hub.archive.engine, CALLING_AE, [], role="admin", note="tests")
    dimse = (await report(hub))["dimse"]
    assert dimse["enabled"] and dimse["open_associations"] == 0 and dimse["connecting"] == 0
    peer = PeerAE(ae_title=CALLING_AE)
    peer.add_requested_context(Verification)
    assoc = await asyncio.to_thread(peer.associate, "127.0.0.1", dimse["port"], ae_title="TESSERA")
    assert assoc.is_established
    try:
        await open_associations_become(hub, 1)
    finally:
        await asyncio.to_thread(assoc.release)
    await open_associations_become(hub, 0)


@pytest.mark.parametrize("role", ["clinic", "pathologist"])
async def test_other_roles_are_refused(hub: HubServer, role: str):
    await create_user(hub.archive.engine, f"system-{role}", role, None)
    _, secret = await issue_token(hub.archive.engine, f"system-{role}")
    status, body = await system(hub, {"Authorization": f"Bearer {secret}"})
    assert status == 403, body
    assert "admin" in body["detail"]
