"""Upload quotas and the expiry of abandoned uploads, against the whole hub on a real port."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp
from hubtest import free_port, running_hub

from hub.config import Settings
from hub.security.accounts import create_user, issue_token

EIGHT_GIB = 8 * 1024**3


async def _clinic_headers(archive) -> dict[str, str]:
    await create_user(archive.engine, "clinic-a", "clinic", None)
    _, secret = await issue_token(archive.engine, "clinic-a")
    return {"Authorization": f"Bearer {secret}"}


async def test_one_clinic_cannot_open_hundreds_of_huge_uploads(settings: Settings) -> None:
    async with running_hub(settings) as hub:
        headers = await _clinic_headers(hub.archive)
        async with aiohttp.ClientSession(headers=headers) as session:

            async def open_one(n: int) -> tuple[int, dict]:
                body = {"filename": f"slide-{n}.svs", "size": EIGHT_GIB}
                async with session.post(hub.url + "/api/uploads", json=body) as resp:
                    return resp.status, await resp.json()

            answers = await asyncio.gather(*(open_one(n) for n in range(300)))
        accepted = [a for status, a in answers if status == 201]
        limit = settings.uploads_declared_bytes_per_user // EIGHT_GIB
        assert len(accepted) == min(limit, settings.uploads_open_per_user)
        refused = [(status, a) for status, a in answers if status != 201]
        assert {status for status, _ in refused} <= {413, 429}
        assert all("limit" in a["detail"] for _, a in refused)
        # Another user has a quota of their own.
        async with (
            hub.session() as admin,
            admin.post(
                hub.url + "/api/uploads", json={"filename": "x.svs", "size": EIGHT_GIB}
            ) as resp,
        ):
            assert resp.status == 201


async def test_an_abandoned_upload_is_removed_with_its_file(tmp_path, database_url) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        port=free_port(),
        database_url=database_url,
        uploads_idle_seconds=0.5,
    )
    async with running_hub(dataclasses.replace(settings)) as hub:
        headers = await _clinic_headers(hub.archive)
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(
                hub.url + "/api/uploads", json={"filename": "a.svs", "size": 1000}
            ) as resp:
                assert resp.status == 201
                upload_id = (await resp.json())["id"]
            async with session.put(
                f"{hub.url}/api/uploads/{upload_id}?offset=0", data=b"x" * 100
            ) as resp:
                assert resp.status == 200
            folder = settings.data_dir / "uploads" / upload_id
            assert folder.is_dir()
            deadline = time.monotonic() + 60
            status = 200
            while time.monotonic() < deadline:
                async with session.get(f"{hub.url}/api/uploads/{upload_id}") as resp:
                    status = resp.status
                if status == 404 and not folder.exists():
                    break
                await asyncio.sleep(0.2)
            assert status == 404, "the abandoned upload is still there"
            assert not folder.exists()
