"""Choosing one's own password, and a one-time password that must be replaced before the
session may do anything else (after an administrator's reset, or on a generated account)."""

from __future__ import annotations

import aiohttp
from security_support import PASSWORD, Gate, reset_password
from sqlalchemy import select

from hub.security.audit_trail import _logs
from hub.security.tables import audit_log

NEW = "a passphrase of my own choosing"
CHANGE = "/api/account/password"


def _session() -> aiohttp.ClientSession:
    # The default jar drops cookies set by an IP-address host; browsers keep them.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _sign_in(session: aiohttp.ClientSession, gate: Gate, user: str, password: str):
    body = {"username": user, "password": password, "next": "/dicomweb/studies"}
    async with session.post(gate.url + "/api/login", json=body) as response:
        return response.status, await response.json()


async def _change(session: aiohttp.ClientSession, gate: Gate, current: str, new: str):
    async with session.post(gate.url + CHANGE, json={"current": current, "new": new}) as r:
        return r.status, await r.json()


async def _trail(gate: Gate) -> list:
    await _logs[gate.engine].flush()
    async with gate.engine.connect() as conn:
        return list(await conn.execute(select(audit_log).order_by(audit_log.c.seq)))


async def test_a_reset_password_is_replaced_before_anything_else(gate: Gate) -> None:
    one_time = await reset_password(gate, "clinic-user")
    async with _session() as session:
        status, signed_in = await _sign_in(session, gate, "clinic-user", one_time)
        assert (status, signed_in["password_temporary"]) == (200, True), signed_in
        assert signed_in["next"] == "/account/password?next=/dicomweb/studies"

        async with session.get(gate.url + "/api/me") as r:
            assert (r.status, (await r.json())["password_temporary"]) == (200, True)
        async with session.get(gate.url + "/dicomweb/studies") as r:
            refused = await r.json()
            assert (r.status, refused["password_change"]) == (403, True), refused
            assert "choose a new password first" in refused["detail"]
        page = {"Accept": "text/html"}
        async with session.get(gate.url + "/", headers=page, allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, "/account/password?next=/")
        async with session.get(gate.url + "/account/password", headers=page) as r:
            assert r.status == 200 and "Choose a new password" in await r.text()

        for current, new, wanted, reason in [
            ("not it at all", NEW, 403, "the current password is not right"),
            (one_time, "too short", 400, "at least 12 characters"),
            (one_time, one_time, 400, "is the current one"),
        ]:
            status, problem = await _change(session, gate, current, new)
            assert (status, reason in problem["detail"]) == (wanted, True), problem
        async with session.post(gate.url + CHANGE, json={"new": NEW}) as r:
            assert r.status == 400 and "current" in (await r.json())["detail"]

        status, changed = await _change(session, gate, one_time, NEW)
        assert (status, changed["changed"]) == (200, True), changed
        async with session.get(gate.url + "/dicomweb/studies") as r:
            assert r.status == 200  # the same session goes on, now free
    async with _session() as session:
        assert (await _sign_in(session, gate, "clinic-user", one_time))[0] == 401
        status, signed_in = await _sign_in(session, gate, "clinic-user", NEW)
        assert (status, signed_in["password_temporary"]) == (200, False)
        assert signed_in["next"] == "/dicomweb/studies"

    trail = await _trail(gate)
    changes = [(r.who, r.outcome) for r in trail if r.action == "user.password.change"]
    assert changes == [("clinic-user", "failure"), ("clinic-user", "success")]
    assert one_time not in repr(trail) and NEW not in repr(trail)


async def test_a_change_ends_the_accounts_other_sessions_and_needs_a_session(
    gate: Gate,
) -> None:
    async with _session() as here, _session() as elsewhere:
        for session in (here, elsewhere):
            assert (await _sign_in(session, gate, "pathologist-user", PASSWORD))[0] == 200
        status, _ = await _change(here, gate, PASSWORD, NEW)
        assert status == 200
        async with here.get(gate.url + "/api/me") as r:
            assert r.status == 200
        async with elsewhere.get(gate.url + "/api/me") as r:
            assert r.status == 401  # whoever knew the old password is signed out

    token = gate.headers("specialist")
    body = {"current": PASSWORD, "new": NEW}
    async with (
        aiohttp.ClientSession(headers=token) as client,
        client.post(gate.url + CHANGE, json=body) as r,
    ):
        assert r.status == 403 and "API token" in (await r.json())["detail"]


async def test_a_generated_password_at_creation_is_one_time(gate: Gate) -> None:
    async with aiohttp.ClientSession(headers=gate.headers("admin")) as admin:
        for name, given in (("generated", None), ("chosen", PASSWORD)):
            body = {"username": name, "role": "clinic"} | ({"password": given} if given else {})
            async with admin.post(gate.url + "/api/admin/users", json=body) as r:
                assert r.status == 201, await r.text()
                created = await r.json()
            async with _session() as session:
                password = given or created["password"]
                status, signed_in = await _sign_in(session, gate, name, password)
                assert (status, signed_in["password_temporary"]) == (200, given is None)


async def test_guessing_the_current_password_is_throttled_as_sign_ins_are(gate: Gate) -> None:
    """From a session left open: after the free failures each guess must wait, the right
    password too, and the sign-in shares the counter."""
    async with _session() as session:
        assert (await _sign_in(session, gate, "pathologist-user", PASSWORD))[0] == 200
        statuses = [(await _change(session, gate, f"guess {n}", NEW))[0] for n in range(8)]
        assert statuses[:5] == [403] * 5
        assert 429 in statuses[5:], statuses
        async with session.post(gate.url + CHANGE, json={"current": PASSWORD, "new": NEW}) as r:
            refused = await r.json()
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1, refused
            assert "too many wrong passwords" in refused["detail"]
    async with _session() as session:
        assert (await _sign_in(session, gate, "pathologist-user", PASSWORD))[0] == 429
    trail = await _trail(gate)
    outcomes = [r.outcome for r in trail if r.action == "user.password.change"]
    assert outcomes.count("failure") >= 5 and "denied" in outcomes and "success" not in outcomes
