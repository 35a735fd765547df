"""Shared fixtures: the corpus, an archive on a temp folder, and the whole hub on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hubtest import HubServer, free_port, running_hub

from hub.archive import Archive
from hub.config import Settings

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"test corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", port=free_port())


@pytest.fixture
async def archive(settings: Settings) -> AsyncIterator[Archive]:
    a = await Archive.open(settings)
    yield a
    await a.close()


@pytest.fixture
async def hub_server(settings: Settings) -> AsyncIterator[HubServer]:
    async with running_hub(settings) as server:
        yield server
