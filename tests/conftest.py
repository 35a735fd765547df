"""Shared fixtures: the corpus, an archive on a temp folder, and the whole hub on a free port."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from hubtest import HubServer, free_port, running_hub
from s3_server import (
    from_environment,
    own_seaweedfs,  # noqa: F401  (a fixture: an S3 server of a test's own)
    seaweedfs,  # noqa: F401  (a fixture: one SeaweedFS S3 server per run)
    store_fields,
    unique_prefix,
)

from hub.archive import Archive
from hub.config import Settings

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"test corpus not found at {CORPUS}")
    return CORPUS


# postgresql://user@host:port/ of a server where the tests may create databases: the fixtures
# below then index into a fresh PostgreSQL database per test instead of SQLite.
POSTGRES = os.environ.get("TESSERA_TEST_POSTGRES")


@pytest.fixture
async def new_database() -> AsyncIterator[Callable[[], Awaitable[str | None]]]:
    """Makes a fresh PostgreSQL database per call (dropped after the test) and returns its URL;
    returns None (SQLite in the data dir) without a server."""
    if not POSTGRES:

        async def none() -> None:
            return None

        yield none
        return
    import asyncpg

    admin = await asyncpg.connect(POSTGRES.rstrip("/") + "/postgres")
    made: list[str] = []

    async def make() -> str:
        name = f"tessera_test_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return POSTGRES.replace("postgresql://", "postgresql+asyncpg://").rstrip("/") + f"/{name}"

    try:
        yield make
        for name in made:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(new_database, monkeypatch) -> str | None:
    """The test's index database, also named in TESSERA_DATABASE_URL for the command-line tools
    a test runs; None (SQLite in the data dir) without a PostgreSQL server."""
    url = await new_database()
    if url:
        monkeypatch.setenv("TESSERA_DATABASE_URL", url)
    return url


# The S3 server tests/with_seaweedfs.sh exported: the fixtures below then keep each test's
# objects in it, under a key prefix of the test's own, instead of in the data dir.
S3 = from_environment()


@pytest.fixture(autouse=True)
def store_on_s3(monkeypatch) -> dict[str, str]:
    """The ``Settings`` fields that put the test's store on S3 (empty without a server); the
    prefix is also in TESSERA_S3_PREFIX for the hubs a test runs as commands. Every test gets a
    prefix of its own, so that one test's objects are never another's orphans."""
    if S3 is None:
        return {}
    prefix = unique_prefix()
    monkeypatch.setenv("TESSERA_S3_PREFIX", prefix)
    return store_fields(S3, prefix)


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None, store_on_s3: dict[str, str]) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", port=free_port(), database_url=database_url, **store_on_s3
    )


@pytest.fixture
async def archive(settings: Settings) -> AsyncIterator[Archive]:
    a = await Archive.open(settings)
    yield a
    await a.close()


@pytest.fixture
async def hub_server(settings: Settings) -> AsyncIterator[HubServer]:
    async with running_hub(settings) as server:
        yield server
