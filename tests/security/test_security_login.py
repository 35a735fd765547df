"""Browser login: session cookie, logout, the login page, rate limiting with lockout."""

from __future__ import annotations

import aiohttp
import pytest
from security_support import PASSWORD, Gate
from sqlalchemy import select
from yarl import URL

from hub.security import ratelimit
from hub.security.audit_trail import _logs
from hub.security.tables import audit_log


def _session(**kwargs) -> aiohttp.ClientSession:
    # The default jar drops cookies set by an IP-address host; browsers keep them.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), **kwargs)


async def _login(session, gate: Gate, user: str, password: str, **extra):
    return await session.post(
        gate.url + "/api/login", json={"username": user, "password": password, **extra}
    )


async def _audit_actions(gate: Gate) -> list[tuple[str, str, str]]:
    await _logs[gate.engine].flush()
    async with gate.engine.connect() as conn:
        rows = await conn.execute(select(audit_log).order_by(audit_log.c.seq))
        return [(r.who, r.action, r.outcome) for r in rows]


async def test_login_sets_a_hardened_session_cookie(gate: Gate) -> None:
    async with _session() as session:
        resp = await _login(session, gate, "clinic-user", PASSWORD, next="/viewer")
        assert resp.status == 200
        assert await resp.json() == {"user": "clinic-user", "role": "clinic", "next": "/viewer"}
        cookie = resp.cookies["tessera_session"]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert not cookie["secure"]  # plain HTTP here; test_security_tls covers HTTPS
        async with session.get(gate.url + "/api/me") as me:
            assert me.status == 200
            body = await me.json()
            assert body["user"] == "clinic-user" and body["via"] == "session"
            assert "slides.upload" in body["scopes"]
        async with session.post(gate.url + "/api/logout") as out:
            assert out.status == 200
        async with session.get(gate.url + "/api/me") as me:
            assert me.status == 401
    assert ("clinic-user", "login", "success") in await _audit_actions(gate)
    assert ("clinic-user", "logout", "success") in await _audit_actions(gate)


async def test_logged_out_cookie_stays_dead(gate: Gate) -> None:
    async with _session() as session:
        await _login(session, gate, "admin-user", PASSWORD)
        secret = session.cookie_jar.filter_cookies(URL(gate.url))["tessera_session"].value
        await session.post(gate.url + "/api/logout")
    async with (
        _session(cookies={"tessera_session": secret}) as replay,
        replay.get(gate.url + "/api/me") as me,
    ):
        assert me.status == 401


async def test_wrong_password_and_unknown_user_look_alike(gate: Gate) -> None:
    async with _session() as session:
        wrong = await _login(session, gate, "clinic-user", "not the password")
        unknown = await _login(session, gate, "nobody", "not the password")
        assert wrong.status == unknown.status == 401
        assert await wrong.json() == await unknown.json()


async def test_open_redirect_is_refused(gate: Gate) -> None:
    async with _session() as session:
        for target in ("https://evil.example/", "//evil.example/x", "/\\evil"):
            resp = await _login(session, gate, "clinic-user", PASSWORD, next=target)
            assert (await resp.json())["next"] == "/"


async def test_form_login_without_javascript(gate: Gate) -> None:
    async with _session() as session:
        resp = await session.post(
            gate.url + "/api/login",
            data={"username": "specialist-user", "password": PASSWORD, "next": "/tele"},
            allow_redirects=False,
        )
        assert resp.status == 303 and resp.headers["Location"] == "/tele"
        async with session.get(gate.url + "/api/me") as me:
            assert (await me.json())["role"] == "specialist"


async def test_bad_login_bodies_are_400(gate: Gate) -> None:
    async with _session() as session:
        for body, ctype in (
            (b"{not json", "application/json"),
            (b"[1, 2]", "application/json"),
            (b'{"username": 5, "password": "x"}', "application/json"),
            (b"x" * (70 * 1024), "application/json"),
        ):
            async with session.post(
                gate.url + "/api/login", data=body, headers={"Content-Type": ctype}
            ) as resp:
                assert resp.status in (400, 413), body[:20]


async def test_user_lockout_after_repeated_failures(gate: Gate) -> None:
    async with _session() as session:
        for _ in range(ratelimit.MAX_FAILURES_PER_USER):
            assert (await _login(session, gate, "pathologist-user", "wrong guess")).status == 401
        # Locked: even the right password is refused now, with a hint when to retry.
        locked = await _login(session, gate, "pathologist-user", PASSWORD)
        assert locked.status == 429
        assert 0 < int(locked.headers["Retry-After"]) <= ratelimit.WINDOW_SECONDS + 1
        # Other users from elsewhere are unaffected by this user's lockout.
        assert (await _login(session, gate, "clinic-user", PASSWORD)).status == 200
    actions = await _audit_actions(gate)
    assert ("pathologist-user", "login.lockout", "failure") in actions
    assert ("pathologist-user", "login.locked", "denied") in actions


async def test_address_lockout_across_user_names(gate: Gate) -> None:
    async with _session() as session:
        for n in range(ratelimit.MAX_FAILURES_PER_ADDRESS):
            assert (await _login(session, gate, f"guess-{n}", "wrong guess")).status == 401
        assert (await _login(session, gate, "clinic-user", PASSWORD)).status == 429


async def test_page_security_headers(gate: Gate) -> None:
    async with _session() as session, session.get(gate.url + "/login") as resp:
        assert resp.status == 200
        assert "<form" in await resp.text()
        h = resp.headers
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert "script-src 'self'" in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["X-Frame-Options"] == "DENY"
        assert h["Referrer-Policy"] == "no-referrer"
        assert "Strict-Transport-Security" not in h  # only over TLS


async def test_cross_origin_post_with_session_is_refused(gate: Gate) -> None:
    async with _session() as session:
        await _login(session, gate, "admin-user", PASSWORD)
        evil = {"Origin": "https://evil.example"}
        async with session.post(gate.url + "/api/worklist", headers=evil) as resp:
            assert resp.status == 403
        async with session.post(gate.url + "/api/worklist") as resp:
            assert resp.status == 200


async def test_cross_site_websocket_with_session_is_refused(gate: Gate) -> None:
    async with _session() as session:
        await _login(session, gate, "clinic-user", PASSWORD)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                gate.url + "/api/telehealth/ws", headers={"Origin": "https://evil.example"}
            )
        assert refused.value.status == 403
