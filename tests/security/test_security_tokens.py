"""Bearer tokens: scoped, expiring, revocable, stored only as a hash."""

from __future__ import annotations

import hashlib
import time

import aiohttp
import pytest
from security_support import Gate
from sqlalchemy import select, update

from hub.security import accounts
from hub.security.accounts import AccountError, create_user, issue_token, resolve_token
from hub.security.tables import tokens


async def _status(gate: Gate, method: str, path: str, secret: str) -> int:
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, gate.url + path, headers=headers) as resp,
    ):
        return resp.status


async def test_only_the_hash_is_stored(engine) -> None:
    await create_user(engine, "svc", "integration", None)
    token_id, secret = await issue_token(engine, "svc")
    async with engine.connect() as conn:
        row = (await conn.execute(select(tokens).where(tokens.c.id == token_id))).one()
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(tuple(row))


async def test_expired_token_is_refused(gate: Gate) -> None:
    token_id, secret = await issue_token(gate.engine, "clinic-user", ttl_seconds=3600)
    assert await _status(gate, "GET", "/dicomweb/studies", secret) == 200
    async with gate.engine.begin() as conn:  # let an hour pass
        await conn.execute(
            update(tokens).where(tokens.c.id == token_id).values(expires_at=time.time() - 1)
        )
    accounts._cache.clear()  # the same effect as the cache's few seconds running out
    assert await _status(gate, "GET", "/dicomweb/studies", secret) == 401


async def test_revoked_token_is_refused_at_once(gate: Gate) -> None:
    token_id, secret = await issue_token(gate.engine, "integration-user")
    assert await _status(gate, "POST", "/dicomweb/studies", secret) == 200
    assert await accounts.revoke_token(gate.engine, token_id)
    assert await _status(gate, "POST", "/dicomweb/studies", secret) == 401
    assert not await accounts.revoke_token(gate.engine, token_id)  # already revoked


async def test_disabled_user_loses_its_tokens(gate: Gate) -> None:
    _, secret = await issue_token(gate.engine, "pathologist-user")
    assert await _status(gate, "GET", "/dicomweb/studies", secret) == 200
    await accounts.set_disabled(gate.engine, "pathologist-user")
    assert await _status(gate, "GET", "/dicomweb/studies", secret) == 401
    with pytest.raises(AccountError, match="disabled"):
        await issue_token(gate.engine, "pathologist-user")


async def test_scopes_narrow_a_token(gate: Gate) -> None:
    _, read_only = await issue_token(gate.engine, "integration-user", scopes=["dicomweb.read"])
    assert await _status(gate, "GET", "/dicomweb/studies", read_only) == 200
    assert await _status(gate, "POST", "/dicomweb/studies", read_only) == 403
    with pytest.raises(AccountError, match="does not have"):
        await issue_token(gate.engine, "integration-user", scopes=["admin"])
    with pytest.raises(AccountError, match="unknown scope"):
        await issue_token(gate.engine, "integration-user", scopes=["everything"])


async def test_session_secret_is_not_a_bearer_token(gate: Gate) -> None:
    _, session_secret = await issue_token(gate.engine, "admin-user", kind="session")
    assert await _status(gate, "GET", "/dicomweb/studies", session_secret) == 401
    who = await resolve_token(gate.engine, session_secret)
    assert who is not None and who.via == "session"


async def test_malformed_authorization_headers(gate: Gate) -> None:
    async with aiohttp.ClientSession() as session:
        for value in ("Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer " + "x" * 5000, "tsr_abc"):
            async with session.get(
                gate.url + "/dicomweb/studies", headers={"Authorization": value}
            ) as resp:
                assert resp.status == 401, value


async def test_password_change_ends_sessions_but_not_api_tokens(gate: Gate) -> None:
    _, session = await issue_token(gate.engine, "clinic-user", kind="session")
    _, api = await issue_token(gate.engine, "clinic-user")
    await accounts.set_password(gate.engine, "clinic-user", "another long password")
    assert await resolve_token(gate.engine, session) is None
    assert await resolve_token(gate.engine, api) is not None


async def test_purge_forgets_long_dead_tokens_only(engine) -> None:
    await create_user(engine, "svc", "integration", None)
    old_id, _ = await issue_token(engine, "svc", ttl_seconds=60)
    live_id, _ = await issue_token(engine, "svc", ttl_seconds=60)
    async with engine.begin() as conn:
        await conn.execute(
            update(tokens).where(tokens.c.id == old_id).values(expires_at=time.time() - 8 * 86400)
        )
    assert await accounts.purge_expired(engine) == 1
    async with engine.connect() as conn:
        assert (await conn.scalars(select(tokens.c.id))).all() == [live_id]
