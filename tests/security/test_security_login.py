"""Browser login: session cookie, logout, the login page, rate limiting with lockout."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from security_support import PASSWORD, Gate
from sqlalchemy import select
from yarl import URL

from hub.errors import PROBLEM_JSON
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
        assert await resp.json() == {
            "user": "clinic-user",
            "role": "clinic",
            "next": "/viewer",
            "password_temporary": False,
        }
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


async def test_a_name_that_is_no_account_is_not_kept_in_the_trail(gate: Gate) -> None:
    """A password typed into the user field must not be written into the trail for good."""
    typed = "Tr0ub4dor&3 typed as the user name"
    async with _session() as session:
        for name in ("clinic-user", typed, typed, "someone else"):
            assert (await _login(session, gate, name, "not the password")).status == 401
    failed = [who for who, action, outcome in await _audit_actions(gate) if outcome == "failure"]
    assert failed[0] == "clinic-user"  # an account's own name is kept
    assert failed[1] == failed[2] != failed[3]  # tries of one name stay linked
    assert all(who.startswith("unknown:") for who in failed[1:]), failed
    async with gate.engine.connect() as conn:
        rows = [tuple(r) for r in await conn.execute(select(audit_log))]
    assert typed not in repr(rows) and "someone else" not in repr(rows)


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


async def test_refused_login_bodies_say_why_in_json(gate: Gate) -> None:
    """The API document promises a problem document for every refusal, forms included."""
    async with _session() as session:
        for body, ctype, status in (
            (b'{"username": "", "password": "x"}', "application/json", 400),
            (b"password=x", "application/x-www-form-urlencoded", 400),
            (b"username=a&password=b", "text/plain", 415),
        ):
            async with session.post(
                gate.url + "/api/login", data=body, headers={"Content-Type": ctype}
            ) as resp:
                assert resp.status == status, body
                assert resp.content_type == PROBLEM_JSON, body
                answer = await resp.json()
                assert answer["status"] == status and answer["detail"], body


def _from(address: str, **kwargs) -> aiohttp.ClientSession:
    """A client whose connections come from ``address`` (any 127.x.y.z reaches the server)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    return _session(connector=connector, **kwargs)


async def test_concurrent_guesses_are_counted_before_they_are_verified(
    gate: Gate, monkeypatch
) -> None:
    # A long first delay: however slowly this machine answers, no delay runs out mid-test.
    monkeypatch.setattr(ratelimit, "ACCOUNT", ratelimit.Rule(5, 600.0, 900.0, 900.0), raising=False)
    async with _from("127.0.0.2") as session:

        async def guess(n: int) -> int:
            async with session.post(
                gate.url + "/api/login",
                json={"username": "pathologist-user", "password": f"guess {n}"},
            ) as resp:
                return resp.status

        statuses = await asyncio.gather(*(guess(n) for n in range(100)))
    verified = statuses.count(401)
    assert verified <= ratelimit.ACCOUNT.free + 1, statuses
    assert statuses.count(429) == 100 - verified


async def test_guesses_from_elsewhere_do_not_lock_a_user_out_of_their_usual_place(
    gate: Gate,
) -> None:
    async with _from("127.0.0.1") as clinic:
        assert (await _login(clinic, gate, "pathologist-user", PASSWORD)).status == 200
    async with _from("127.0.0.3") as attacker:
        statuses = [
            (await _login(attacker, gate, "pathologist-user", f"guess {n}")).status
            for n in range(12)
        ]
        assert statuses[:5] == [401] * 5
        slowed = [s for s in statuses if s == 429]
        assert slowed, "the guesser is slowed down"
        refused = await _login(attacker, gate, "pathologist-user", PASSWORD)
        assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    # The user, from where they signed in before, still gets in with the right password.
    async with _from("127.0.0.1") as clinic:
        assert (await _login(clinic, gate, "pathologist-user", PASSWORD)).status == 200
    actions = await _audit_actions(gate)
    assert ("pathologist-user", "login.throttled", "denied") in actions


async def test_a_sprayer_behind_a_clinic_nat_does_not_block_its_colleagues(gate: Gate) -> None:
    """One address for a whole clinic: failures there slow down new names, not known users."""
    async with _from("127.0.0.4") as clinic:
        for user in ("clinic-user", "specialist-user"):
            assert (await _login(clinic, gate, user, PASSWORD)).status == 200
        sprayed = [
            (await _login(clinic, gate, f"guess-{n}", "wrong guess")).status
            for n in range(ratelimit.ADDRESS.free + 5)
        ]
        assert 429 in sprayed, "the address's bucket ran dry"
        assert (await _login(clinic, gate, "clinic-user", PASSWORD)).status == 200
        assert (await _login(clinic, gate, "specialist-user", PASSWORD)).status == 200
        # A name never signed in from here waits like the sprayer does.
        assert (await _login(clinic, gate, "admin-user", PASSWORD)).status == 429


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
