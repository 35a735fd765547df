"""Role x route matrix, walked from the application's own router table.

The expectation below is the product's access table written out independently of
hub.security.policy; a route whose name no rule covers fails ``test_every_route_has_a_rule``.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
from aiohttp import web
from security_support import ROLES, Gate

from hub.security.policy import rule_for

# role -> route-name areas it may use (longest prefix wins). "*": everything with a rule.
EXPECTED: dict[str, set[str]] = {
    "admin": {"*"},
    "pathologist": {"page", "account", "dicomweb.read", "jobs.read", "annotations.write"},
    "specialist": {
        "page",
        "account",
        "dicomweb.read",
        "telehealth.join",
        "telehealth.signal",
        "telehealth.capture",
    },
    "clinic": {
        "page",
        "account",
        "dicomweb.read",
        "dicomweb.write",
        "slides.upload",
        "jobs.read",
        "worklist.read",
        "telehealth.start",
        "telehealth.signal",
        "telehealth.capture",
    },
    "integration": {"page", "account", "dicomweb.read", "dicomweb.write"},
}


def expected_allowed(role: str | None, name: str) -> bool:
    if not rule_for(name)[0]:
        return False
    if name.startswith("public."):
        return True
    if role is None:
        return False
    granted = EXPECTED[role]
    return "*" in granted or any(name == a or name.startswith(a + ".") for a in granted)


def route_table(app: web.Application) -> list[tuple[str, str, str | None]]:
    """(method, concrete path, route name) for every route, placeholders filled in."""
    table = []
    for resource in app.router.resources():
        info = resource.get_info()
        if "prefix" in info:  # static directory
            path = info["prefix"].rstrip("/") + "/probe.txt"
        else:
            path = info.get("path") or info["formatter"]
            path = re.sub(r"\{[^}]*\}", "1", path)
        for route in resource:
            if route.method == "HEAD":
                continue
            method = "GET" if route.method == "*" else route.method
            table.append((method, path, resource.name))
    return table


async def _probe(
    session: aiohttp.ClientSession, base: str, method: str, path: str, headers: dict
) -> tuple[int, dict | None]:
    """Status and, when the gate refused, its JSON body. A handler that takes its time
    passed the gate (the gate answers at once), so a timeout counts as let through."""
    try:
        async with session.request(
            method,
            base + path,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=5),
        ) as resp:
            body = None
            if resp.status in (401, 403) and resp.content_type == "application/json":
                body = await resp.json()
            return resp.status, body
    except TimeoutError:
        return 200, None


def refused_by_gate(status: int, body: dict | None, anonymous: bool) -> bool:
    if status == 403 and body is not None and "permission" in body:
        return True
    return anonymous and status in (401, 303)


async def walk_matrix(base: str, app: web.Application, tokens: dict[str, str]) -> list[str]:
    failures = []
    principals: list[tuple[str | None, dict]] = [(None, {})]
    principals += [(role, {"Authorization": f"Bearer {tokens[role]}"}) for role in ROLES]
    async with aiohttp.ClientSession() as session:
        for method, path, name in route_table(app):
            for role, headers in principals:
                status, body = await _probe(session, base, method, path, headers)
                refused = refused_by_gate(status, body, role is None)
                if refused == expected_allowed(role, name or ""):
                    verdict = "refused" if refused else "let through"
                    failures.append(f"{role or 'anonymous'} {method} {path} ({name}): {verdict}")
                if status >= 500:
                    failures.append(f"{role or 'anonymous'} {method} {path} ({name}): {status}")
    return failures


def test_every_route_has_a_rule_flags_unknown_names(gate: Gate) -> None:
    missing = [(m, p, n) for m, p, n in route_table(gate.app) if not rule_for(n)[0]]
    # The small app deliberately carries an unnamed route and one in an unknown area.
    assert sorted(n or "" for _, _, n in missing) == ["", "mystery.thing"]


async def test_role_route_matrix(gate: Gate) -> None:
    failures = await walk_matrix(gate.url, gate.app, gate.tokens)
    assert not failures, "\n".join(failures)


async def test_unknown_and_unnamed_routes_refused_even_for_admin(gate: Gate) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/unnamed", "/mystery"):
            async with session.get(gate.url + path, headers=gate.headers("admin")) as resp:
                assert resp.status == 403
                assert "no access rule" in (await resp.json())["error"]


async def test_missing_credentials_get_a_bearer_challenge(gate: Gate) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gate.url + "/dicomweb/studies") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="tessera"')
        async with session.get(gate.url + "/", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/login?next=/"
        bad = {"Authorization": "Bearer tsr_not-a-real-token"}
        async with session.get(gate.url + "/dicomweb/studies", headers=bad) as resp:
            assert resp.status == 401
            assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_principal_reaches_the_handler(gate: Gate) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(gate.url + "/api/jobs/7", headers=gate.headers("clinic")) as resp,
    ):
        assert resp.status == 200
        assert await resp.json() == {"route": "jobs.read.status", "user": "clinic-user"}


async def test_refusals_are_audited(gate: Gate) -> None:
    from hub.security.tables import audit_log

    async with (
        aiohttp.ClientSession() as session,
        session.post(gate.url + "/api/worklist", headers=gate.headers("specialist")) as resp,
    ):
        assert resp.status == 403
    await asyncio.sleep(0)  # the writer is asynchronous: flush it
    from hub.security.audit_trail import _logs

    await _logs[gate.engine].flush()
    async with gate.engine.connect() as conn:
        rows = (await conn.execute(audit_log.select())).all()
    denied = [r for r in rows if r.action == "access.denied"]
    assert len(denied) == 1
    assert denied[0].who == "specialist-user" and denied[0].outcome == "denied"
    assert "worklist.write.item" in denied[0].detail


async def test_small_request_areas_are_cut_off_when_too_slow(gate: Gate, monkeypatch) -> None:
    from hub.security import middleware

    monkeypatch.setattr(middleware, "SMALL_REQUEST_SECONDS", 0.2)
    async with (
        aiohttp.ClientSession() as session,
        session.get(gate.url + "/api/worklist-stall", headers=gate.headers("clinic")) as resp,
    ):
        assert resp.status == 504


async def test_small_request_areas_refuse_big_bodies(gate: Gate) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gate.url + "/api/worklist", data=b"x" * 70_000, headers=gate.headers("admin")
        ) as resp,
    ):
        assert resp.status == 413
