"""Forwarding to a STOW-RS target: the hub's own STOW-RS endpoint as the receiver."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pydicom
from aiohttp import web
from forward_peers import Gateway, forward_config, sample_files
from hubtest import free_port

from hub.app import build_app
from hub.app_keys import ARCHIVE_KEY
from hub.archive import Archive, Source
from hub.config import Settings
from hub.security.accounts import create_user, issue_token

SOURCE = Source(door="telehealth", actor="clinic1")


def stow_target(url: str, headers: dict[str, str]) -> dict:
    auth = headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
    return {"type": "stow", "url": url, "token": token}


async def test_every_object_arrives_byte_identical_over_stow_rs(hub_server, hub_factory, corpus):
    target = stow_target(f"{hub_server.url}/dicomweb", hub_server.admin_headers)
    sender = await hub_factory(forward_config({"hub2": target}, [{"target": "hub2"}]))
    stored = {}
    slides = [
        corpus / "dicom-wsi" / name for name in ("sm_image.dcm", "boxes_0.dcm", "boxes_1.dcm")
    ]
    for path in [*sample_files(), *slides]:
        res = await sender.archive.ingest_file(path, source=SOURCE)
        stored[res.sop_instance_uid] = (res.study_uid, res.sha256)

    counts = await sender.wait_settled()
    assert counts == {"hub2": {"done": len(stored)}}
    for sop, (study, sha256) in stored.items():
        (ref,) = await hub_server.archive.instances(study, sop_uid=sop)
        assert ref.sha256 == sha256  # the whole Part-10 file, byte for byte


async def test_conflicting_instance_is_a_dead_letter(hub_server, hub_factory, tmp_path: Path):
    original = sample_files()[0]
    await hub_server.archive.ingest_file(original, source=SOURCE)
    changed = pydicom.dcmread(original)
    changed.PatientName = "OTHER^PATIENT"  # same SOP Instance UID, different content
    changed_path = tmp_path / "changed.dcm"
    changed.save_as(changed_path, enforce_file_format=True)

    target = stow_target(f"{hub_server.url}/dicomweb", hub_server.admin_headers)
    sender = await hub_factory(forward_config({"hub2": target}, [{"target": "hub2"}]))
    await sender.archive.ingest_file(changed_path, source=SOURCE)

    counts = await sender.wait_settled()
    assert counts == {"hub2": {"dead": 1}}
    (dead,) = await sender.forwarder.queue.list(state="dead")
    assert dead.last_status == 409
    assert "0x0111" in dead.last_error and "duplicate SOP instance" in dead.last_error
    assert dead.attempts == 1


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[web.Application]:
    app = await build_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    try:
        yield app
    finally:
        await runner.cleanup()


async def integration_token(settings: Settings) -> str:
    """A STOW-capable API token on a hub that is not running yet."""
    archive = await Archive.open(settings)
    try:
        await create_user(archive.engine, "pacs-feed", "integration", None)
        _, secret = await issue_token(archive.engine, "pacs-feed", label="forwarding")
    finally:
        await archive.close()
    return secret


async def test_503_from_a_gateway_is_retried_until_the_hub_is_back(hub_factory, tmp_path):
    receiver = Settings(data_dir=tmp_path / "receiver", port=free_port())
    token = await integration_token(receiver)
    gateway = Gateway(receiver.port)
    await gateway.start()
    try:
        target = {"type": "stow", "url": f"{gateway.url}/dicomweb", "token": token}
        sender = await hub_factory(forward_config({"hub2": target}, [{"target": "hub2"}]))
        res = await sender.archive.ingest_file(sample_files()[0], source=SOURCE)

        async def waiting_on_503() -> bool:
            tasks = await sender.forwarder.queue.list(state="pending")
            return bool(tasks) and tasks[0].attempts >= 2 and tasks[0].last_status == 503

        await sender.wait_until(waiting_on_503)
        async with serving(receiver) as app:
            counts = await sender.wait_settled()
            assert counts == {"hub2": {"done": 1}}
            (ref,) = await app[ARCHIVE_KEY].instances(res.study_uid, sop_uid=res.sop_instance_uid)
            assert ref.sha256 == res.sha256
        assert gateway.unavailable >= 2
    finally:
        await gateway.stop()
