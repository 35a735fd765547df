"""Credential changes reach every node on one PostgreSQL index within a second.

Two ``tessera serve`` nodes with data folders of their own share the index: a change made through
one (its API, or ``tessera`` on its data folder) is refused by the other within 1 s of the change
returning. The nodes clear their caches on a LISTEN notification; the cache age bound is the
backstop when a notification is lost, and is tested here on its own with no listener at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from hubtest import HubProcess
from security_support import NEEDS_POSTGRES, PASSWORD, cli
from sqlalchemy import update

from hub.archive.index import create_schema, make_engine
from hub.security import accounts, revocations
from hub.security.accounts import create_user, issue_token, resolve_token
from hub.security.tables import tokens

pytestmark = NEEDS_POSTGRES

BOUND = 1.0  # the promise: refused by this long after the change returned
WATCH = 2.0  # how long the tests keep asking, so that a loaded machine shows what it did
PATIENCE = 30.0  # how long to wait for what must come at some point


async def _refusal_after(
    change: Callable[[], Awaitable[object]], allowed: Callable[[], Awaitable[bool]]
) -> float:
    """Make the change, then keep asking ``allowed`` until WATCH has passed; returns when the
    first refusal was asked for, in seconds after the change returned. Every answer asked for
    from BOUND on must be a refusal (and there is at least one, however slow the answers);
    answers asked for earlier are free to be either."""
    await change()
    returned = time.monotonic()
    first_refused = None
    checked = 0
    while (asked := time.monotonic() - returned) < WATCH or not checked:
        ok = await allowed()
        if not ok and first_refused is None:
            first_refused = asked
        if asked >= BOUND:
            assert not ok, f"still honoured {asked:.2f} s after the change"
            checked += 1
        await asyncio.sleep(0.02)
    assert first_refused is not None
    print(f"refused {first_refused * 1000:.0f} ms after the change returned")
    return first_refused


# -- two nodes ------------------------------------------------------------------------------


def _bearer(node: HubProcess, user: str, role: str) -> tuple[int, dict[str, str]]:
    cli(node.data, "user", "add", user, "--role", role, "--no-password")
    issued = cli(node.data, "user", "token", user)
    token_id = int(issued.stderr.split()[1])  # "token N for USER ..."
    return token_id, {"Authorization": f"Bearer {issued.stdout.strip()}"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _reads(http: aiohttp.ClientSession, node: HubProcess, **request) -> Callable:
    async def allowed() -> bool:
        async with http.get(f"{node.url}/dicomweb/studies", **request) as resp:
            assert resp.status in (200, 401), resp.status
            return resp.status == 200

    return allowed


async def test_a_token_revoked_through_one_node_is_refused_by_the_other(nodes, http) -> None:
    a, b = nodes
    _, admin = _bearer(a, "boss", "admin")
    token_id, bearer = _bearer(a, "reader", "pathologist")
    on_b = _reads(http, b, headers=bearer)
    assert await on_b()  # B resolved the token and keeps it in its cache

    async def revoke_through_a() -> None:
        async with http.delete(f"{a.url}/api/admin/tokens/{token_id}", headers=admin) as resp:
            assert resp.status == 200, await resp.text()

    await _refusal_after(revoke_through_a, on_b)
    assert await _reads(http, a, headers=bearer)() is False


async def test_a_user_disabled_on_the_command_line_is_refused_by_both_nodes(nodes, http) -> None:
    a, b = nodes
    _, bearer = _bearer(a, "clinician", "clinic")
    on_a, on_b = _reads(http, a, headers=bearer), _reads(http, b, headers=bearer)
    assert await on_a() and await on_b()

    async def disable() -> None:
        await asyncio.to_thread(cli, a.data, "user", "disable", "clinician")

    await _refusal_after(disable, on_b)
    assert await on_a() is False


async def test_a_password_change_ends_the_sessions_on_the_other_node(nodes, http) -> None:
    a, b = nodes
    cli(a.data, "user", "add", "pat", "--role", "pathologist", "--password-stdin", stdin=PASSWORD)
    login = {"username": "pat", "password": PASSWORD}
    async with http.post(f"{b.url}/api/login", json=login) as resp:
        assert resp.status == 200, await resp.text()
        cookies = {name: morsel.value for name, morsel in resp.cookies.items()}
    http.cookie_jar.clear()  # the session is sent explicitly below, and only to B

    async def signed_in() -> bool:
        async with http.get(f"{b.url}/api/me", cookies=cookies) as resp:
            assert resp.status in (200, 401), resp.status
            return resp.status == 200

    assert await signed_in()

    async def change_password() -> None:
        new = "a different long passphrase"
        await asyncio.to_thread(cli, a.data, "user", "password", "pat", "--password-stdin",
                                stdin=new)  # fmt: skip

    await _refusal_after(change_password, signed_in)


# -- one process: the listener, and the bound without it -----------------------------------


@pytest.fixture
async def engine_b(database_url: str) -> AsyncIterator:
    """The index as a node's process sees it; changes come from ``tessera`` commands, other
    processes, so nothing clears this process's cache but the listener and the bound."""
    engine = make_engine(database_url)
    await create_schema(engine)
    yield engine
    await engine.dispose()


async def _cached_token(engine, tmp_path: Path, user: str) -> tuple[int, str]:
    await create_user(engine, user, "integration", None)
    token_id, secret = await issue_token(engine, user)
    assert await resolve_token(engine, secret) is not None
    assert accounts._cache, "the principal is cached"
    return token_id, secret


async def _revoke_elsewhere(tmp_path: Path, token_id: int) -> None:
    await asyncio.to_thread(cli, tmp_path / "cli", "user", "token", "--revoke", str(token_id))


async def test_the_listener_empties_the_cache_when_another_process_revokes(
    engine_b, tmp_path: Path
) -> None:
    listener = revocations.listener_for(engine_b, accounts.forget_cached)
    assert listener is not None
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), PATIENCE)
        token_id, secret = await _cached_token(engine_b, tmp_path, "svc")
        before = listener.notifications
        await _revoke_elsewhere(tmp_path, token_id)
        returned = time.monotonic()
        assert await _until(lambda: listener.notifications > before), "no notification came"
        print(f"notified {(time.monotonic() - returned) * 1000:.0f} ms after the revoke returned")
        assert not accounts._cache, "the notification emptied the cache"
        assert await resolve_token(engine_b, secret) is None

        # A lost connection is noticed and replaced; the new one empties the cache too, since
        # notifications sent meanwhile were lost.
        await _cached_token(engine_b, tmp_path, "svc2")
        connections, killed = listener.connections, listener.server_pid
        async with engine_b.connect() as conn:
            await conn.exec_driver_sql(f"SELECT pg_terminate_backend({killed})")
        assert await _until(lambda: listener.connections > connections), "no new connection"
        assert listener.server_pid != killed
        assert not accounts._cache, "the new connection emptied the cache"
        token_id, _ = await _cached_token(engine_b, tmp_path, "svc3")
        before = listener.notifications
        await _revoke_elsewhere(tmp_path, token_id)
        assert await _until(lambda: listener.notifications > before), "no notification came"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _until(predicate: Callable[[], bool], seconds: float = PATIENCE) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return predicate()


async def test_without_a_listener_the_cache_bound_refuses_within_a_second(
    engine_b, database_url: str, tmp_path: Path
) -> None:
    """A change whose notification never arrives: the row is updated by another engine with
    plain SQL, at once after this process cached the token, and no listener runs here."""
    token_id, secret = await _cached_token(engine_b, tmp_path, "svc")
    other = make_engine(database_url)

    async def revoke_unannounced() -> None:
        async with other.begin() as conn:
            await conn.execute(
                update(tokens).where(tokens.c.id == token_id).values(revoked_at=time.time())
            )

    async def allowed() -> bool:
        return await resolve_token(engine_b, secret) is not None

    try:
        assert await allowed()  # cached a moment before the change
        emptied = accounts._generation
        await _refusal_after(revoke_unannounced, allowed)
    finally:
        await other.dispose()
    assert accounts._generation == emptied, "nothing emptied the cache: the bound refused"
