"""Shared fixtures: the corpus, an archive on a temp folder, and the whole hub on a free port."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hub.app import build_app
from hub.app_keys import ARCHIVE_KEY
from hub.archive import Archive
from hub.config import Settings

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"test corpus not found at {CORPUS}")
    return CORPUS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", port=free_port())


@pytest.fixture
async def archive(settings: Settings) -> AsyncIterator[Archive]:
    a = await Archive.open(settings)
    yield a
    await a.close()


@dataclass
class HubServer:
    url: str
    archive: Archive
    settings: Settings
    app: web.Application
    admin_headers: dict[str, str] = field(default_factory=dict)

    def session(self, **kwargs) -> aiohttp.ClientSession:
        """An HTTP client signed in as an administrator."""
        return aiohttp.ClientSession(headers=self.admin_headers, **kwargs)


@contextlib.asynccontextmanager
async def running_hub(settings: Settings) -> AsyncIterator[HubServer]:
    """The whole hub served on 127.0.0.1 at settings.port until the block ends."""
    app = await build_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.port)
    await site.start()
    server = HubServer(f"http://127.0.0.1:{settings.port}", app[ARCHIVE_KEY], settings, app)
    server.admin_headers = await _admin_headers(server.archive)
    try:
        yield server
    finally:
        await runner.cleanup()


async def _admin_headers(archive: Archive) -> dict[str, str]:
    from hub.security.accounts import create_user, issue_token

    await create_user(archive.engine, "test-admin", "admin", None)
    _, secret = await issue_token(archive.engine, "test-admin", label="tests")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
async def hub_server(settings: Settings) -> AsyncIterator[HubServer]:
    async with running_hub(settings) as server:
        yield server
