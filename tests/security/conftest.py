"""Fixtures for the security tests: a database, and a small app gated by hub.security.setup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from argon2 import profiles
from hubtest import HubProcess, free_port
from security_support import NODES_AUDIT_KEY, PASSWORD, ROLES, Gate, gated_app
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive.index import create_schema, make_engine
from hub.security import audit_trail as audit_mod
from hub.security import passwords
from hub.security.accounts import create_user, issue_token


@pytest.fixture(autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Cheapest argon2 parameters here: these tests hash and verify hundreds of passwords."""
    passwords.use_profile(profiles.CHEAPEST)
    yield
    passwords.use_profile(profiles.get_default_parameters())


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'index.sqlite'}")
    await create_schema(eng)
    yield eng
    audit_mod.detach(eng)
    await eng.dispose()


@pytest.fixture
async def audited(engine: AsyncEngine, tmp_path: Path) -> AsyncEngine:
    """The engine with an audit log attached (direct writes, no background writer)."""
    audit_mod.attach(engine, tmp_path)
    return engine


@pytest.fixture
async def gate(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Gate]:
    app = gated_app(engine, tmp_path)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    tokens = {}
    for role in ROLES:
        name = f"{role}-user"
        await create_user(engine, name, role, PASSWORD)
        tokens[role] = (await issue_token(engine, name))[1]
    try:
        yield Gate(str(server.make_url("")).rstrip("/"), engine, tmp_path, app, tokens)
    finally:
        await server.close()


@pytest.fixture
def nodes(
    tmp_path: Path, database_url: str, monkeypatch
) -> Iterator[tuple[HubProcess, HubProcess]]:
    """Two ``tessera serve`` nodes, A and B: data folders of their own, one index (the
    test's PostgreSQL database, in TESSERA_DATABASE_URL for them and for the commands)."""
    monkeypatch.setenv("TESSERA_AUDIT_KEY", NODES_AUDIT_KEY)
    started: list[HubProcess] = []
    try:
        for name in ("a", "b"):
            started.append(HubProcess(tmp_path / name, free_port()))
        yield started[0], started[1]
    finally:
        for node in started:
            node.stop()
