"""Searching the audit trail and managing users through the admin API, on the whole hub: the
records searched for are made by doing things (signing in, issuing tokens, reading a study,
changing users), and each filter must give exactly the records of the whole trail it names."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pydicom
from hubtest import HubServer
from pydicom.data import get_testdata_file

from hub.archive import Source
from hub.errors import PROBLEM_JSON
from hub.security import accounts
from hub.security.accounts import ChangeRefused, create_user, issue_token

SEARCH = "/api/admin/audit"


async def _search(hub: HubServer, **params: object) -> dict:
    query = {k: str(v) for k, v in params.items()}
    async with hub.session() as http, http.get(hub.url + SEARCH, params=query) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _call(hub: HubServer, method: str, path: str, body: object = None, headers=None):
    """(status, JSON answer) of one admin API call, as the hub's test administrator by default."""
    async with (
        aiohttp.ClientSession(headers=headers or hub.admin_headers) as http,
        http.request(method, hub.url + path, json=body) as response,
    ):
        return response.status, await response.json(content_type=None)


async def _sign_in(hub: HubServer, username: str, password: str) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http:
        body = {"username": username, "password": password}
        async with http.post(hub.url + "/api/login", json=body) as response:
            await response.read()
            return response


async def _add_user(hub: HubServer, username: str, role: str) -> str:
    status, answer = await _call(
        hub, "POST", "/api/admin/users", {"username": username, "role": role}
    )
    assert status == 201, answer
    return answer["password"]


async def _bearer(hub: HubServer, username: str) -> dict[str, str]:
    status, answer = await _call(hub, "POST", "/api/admin/tokens", {"username": username})
    assert status == 201, answer
    return {"Authorization": f"Bearer {answer['token']}"}


async def _make_a_trail(hub: HubServer) -> dict:
    """Sign-ins, a failed one, tokens, a study read, a refusal and allow-list changes; what was
    used (users, the study, the secrets) for the checks. The reader's name is new each time:
    the hub records one read of a study per user in ten minutes, in any test of the process."""
    path = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    stored = await hub.archive.ingest_file(path, source=Source(door="import"))
    assert stored.ok
    nurse_password = await _add_user(hub, "nurse", "clinic")
    assert (await _sign_in(hub, "nurse", nurse_password)).status == 200
    assert (await _sign_in(hub, "nurse", "not the password at all")).status == 401
    reader_name = f"reader-{uuid.uuid4().hex[:8]}"
    await _add_user(hub, reader_name, "pathologist")
    reader = await _bearer(hub, reader_name)
    study_url = f"{hub.url}/dicomweb/studies/{ds.StudyInstanceUID}/metadata"
    async with aiohttp.ClientSession(headers=reader) as http:
        async with http.get(study_url) as response:
            assert response.status == 200
        async with http.get(hub.url + "/api/admin/users") as response:
            assert response.status == 403
    for method, body in (("PUT", {"services": ["store"], "role": "clinic"}), ("DELETE", None)):
        status, answer = await _call(hub, method, "/api/admin/ae/US_CART", body)
        assert status == 200, answer
    return {
        "reader": reader_name,
        "patient": ds.PatientID,
        "study": ds.StudyInstanceUID,
        "secrets": [nurse_password, reader["Authorization"].split()[1]],
    }


def _instant(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def test_each_filter_gives_exactly_the_records_it_names(hub_server: HubServer) -> None:
    hub = hub_server
    made = await _make_a_trail(hub)
    whole = await _search(hub, limit=500)
    trail = whole["records"]
    assert whole["next"] is None and len(trail) < 500
    frozen = trail[0]["seq"] + 1  # searches append records of their own: look below this one
    middle = trail[len(trail) // 2]
    two_hours_east = timezone(timedelta(hours=2))
    cases = [
        ({"who": "nurse"}, lambda r: r["who"] == "nurse"),
        ({"who": "nurse", "outcome": "failure"}, lambda r: r["who"] == "nurse" and r["outcome"] == "failure"),
        ({"outcome": "denied"}, lambda r: r["outcome"] == "denied"),
        ({"action": "token.issue"}, lambda r: r["action"] == "token.issue"),
        ({"action": "ae."}, lambda r: r["action"].startswith("ae.")),
        ({"action": "login", "who": "nurse"}, lambda r: r["action"] == "login" and r["who"] == "nurse"),
        ({"patient": made["patient"]}, lambda r: r["patient"] == made["patient"]),
        ({"study": made["study"]}, lambda r: r["study"] == made["study"]),
        ({"since": middle["time"]}, lambda r: r["at"] >= _instant(middle["time"])),
        ({"until": middle["time"]}, lambda r: r["at"] < _instant(middle["time"])),
        ({"since": f"{middle['at']:.6f}"}, lambda r: r["at"] >= middle["at"]),
        ({"until": f"{middle['at']:.6f}"}, lambda r: r["at"] < middle["at"]),
        # the same instant with an offset, and without one (UTC)
        (
            {"since": datetime.fromisoformat(middle["time"]).astimezone(two_hours_east).isoformat()},
            lambda r: r["at"] >= _instant(middle["time"]),
        ),
        ({"since": middle["time"].removesuffix("+00:00")}, lambda r: r["at"] >= _instant(middle["time"])),
    ]  # fmt: skip
    for params, wanted in cases:
        found = (await _search(hub, before=frozen, limit=500, **params))["records"]
        expected = [r for r in trail if wanted(r)]
        assert found == expected, params
        assert 0 < len(found) < len(trail), f"{params} does not narrow the trail"

    by_action = {r["action"] for r in trail}
    assert {"login", "token.issue", "study.read", "access.denied", "ae.allow"} <= by_action
    (failed,) = [r for r in trail if r["who"] == "nurse" and r["outcome"] == "failure"]
    assert failed["action"] == "login" and failed["source"] == "127.0.0.1"
    issued = [r for r in trail if r["action"] == "token.issue"]
    assert {r["detail"]["user"] for r in issued} == {made["reader"]}  # the detail is parsed JSON
    (read,) = [r for r in trail if r["action"] == "study.read"]
    assert read["who"] == made["reader"] and read["patient"] == made["patient"]
    assert [r["action"] for r in trail if r["action"].startswith("ae.")] == [
        "ae.remove",
        "ae.allow",
    ]


async def test_the_answers_hold_no_macs_and_no_secrets(hub_server: HubServer) -> None:
    hub = hub_server
    made = await _make_a_trail(hub)
    status, reset = await _call(hub, "POST", "/api/admin/users/nurse/password")
    assert status == 200
    signed_in = await _sign_in(hub, "nurse", reset["password"])
    assert signed_in.status == 200
    session = signed_in.cookies["tessera_session"].value
    async with hub.session() as http, http.get(hub.url + SEARCH, params={"limit": "500"}) as r:
        text = await r.text()
        records = (await r.json())["records"]
    assert {"user.add", "user.password", "token.issue", "login"} <= {r["action"] for r in records}
    assert all("mac" not in record for record in records)
    for secret in [*made["secrets"], reset["password"], session]:
        assert secret not in text


async def test_pages_go_back_without_gaps_or_repeats(hub_server: HubServer) -> None:
    hub = hub_server
    await create_user(hub.archive.engine, "scanner", "integration", None)
    for _ in range(7):
        await _bearer(hub, "scanner")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"action": "token.issue", "limit": 3} | ({"before": cursor} if cursor else {})
        page = await _search(hub, **params)
        seen += [r["seq"] for r in page["records"]]
        pages += 1
        await _bearer(hub, "scanner")  # appended meanwhile: above the first page
        cursor = page["next"]
        if cursor is None:
            break
        assert cursor == seen[-1]
    assert pages == 3 and len(seen) == 7
    assert seen == sorted(set(seen), reverse=True)  # newest first, no repeats
    everything = await _search(hub, action="token.issue", before=seen[0] + 1, limit=500)
    assert [r["seq"] for r in everything["records"]] == seen  # no gaps

    first = await _search(hub, limit=4)
    walked, cursor = [r["seq"] for r in first["records"]], first["next"]
    while cursor is not None:
        page = await _search(hub, before=cursor, limit=4)
        walked += [r["seq"] for r in page["records"]]
        cursor = page["next"]
    assert walked == list(range(walked[0], 0, -1))  # the whole trail, every record once


async def test_bad_parameters_are_refused_naming_the_parameter(hub_server: HubServer) -> None:
    hub = hub_server
    cases = [
        ("limit=0", "limit", "from 1 to 500"),
        ("limit=501", "limit", "from 1 to 500"),
        ("limit=ten", "limit", "integer"),
        ("before=0", "before", "integer"),
        ("before=-3", "before", "integer"),
        ("since=yesterday", "since", "ISO 8601"),
        ("until=2025-13-01", "until", "ISO 8601"),
        ("since=2025-06-02&until=2025-06-01", "until", "later than since"),
        ("outcome=ok", "outcome", "success, failure, denied"),
        ("colour=red", "colour", "not a search parameter"),
        ("who=a&who=b", "who", "more than once"),
        ("who=" + "x" * 129, "who", "longer than 128"),
    ]
    async with hub.session() as http:
        for query, parameter, reason in cases:
            async with http.get(f"{hub.url}{SEARCH}?{query}") as response:
                assert response.status == 400, query
                assert response.content_type == PROBLEM_JSON
                problem = await response.json(content_type=None)
            assert problem["status"] == 400 and problem["parameter"] == parameter, query
            assert parameter in problem["detail"] and reason in problem["detail"], problem


async def test_other_roles_may_not_search_or_change_users(hub_server: HubServer) -> None:
    hub = hub_server
    await create_user(hub.archive.engine, "clinic-a", "clinic", None)
    _, secret = await issue_token(hub.archive.engine, "clinic-a")
    clinic = {"Authorization": f"Bearer {secret}"}
    for method, path, body in [
        ("GET", SEARCH, None),
        ("PUT", "/api/admin/users/clinic-a/role", {"role": "admin"}),
        ("POST", "/api/admin/users/test-admin/password", None),
        ("POST", "/api/admin/users/test-admin/disable", {"disabled": True}),
    ]:
        status, answer = await _call(hub, method, path, body, headers=clinic)
        assert status == 403 and answer["permission"] == "admin", (method, path)
    status, users = await _call(hub, "GET", "/api/admin/users")
    assert {u["username"]: u["role"] for u in users}["clinic-a"] == "clinic"


async def test_role_changes_and_enabling_are_audited_with_old_and_new(
    hub_server: HubServer,
) -> None:
    hub = hub_server
    await _add_user(hub, "nurse", "clinic")
    nurse = await _bearer(hub, "nurse")
    status, answer = await _call(hub, "PUT", "/api/admin/users/nurse/role", {"role": "pathologist"})
    assert (status, answer) == (200, {"username": "nurse", "role": "pathologist"})
    status, me = await _call(hub, "GET", "/api/me", headers=nurse)
    assert me["role"] == "pathologist"  # at once, on the tokens it already has

    for disabled in (True, False):
        status, _ = await _call(
            hub, "POST", "/api/admin/users/nurse/disable", {"disabled": disabled}
        )
        assert status == 200
    status, me = await _call(hub, "GET", "/api/me", headers=nurse)
    assert status == 200 and me["user"] == "nurse"

    (role,) = (await _search(hub, action="user.role"))["records"]
    assert role["who"] == "test-admin" and role["role"] == "admin"
    assert role["detail"] == {
        "user": "nurse",
        "field": "role",
        "old": "clinic",
        "new": "pathologist",
    }
    (disabled,) = (await _search(hub, action="user.disable"))["records"]
    assert disabled["detail"] == {"user": "nurse", "field": "disabled", "old": False, "new": True}
    (enabled,) = (await _search(hub, action="user.enable"))["records"]
    assert enabled["detail"] == {"user": "nurse", "field": "disabled", "old": True, "new": False}

    status, problem = await _call(hub, "PUT", "/api/admin/users/nurse/role", {"role": "janitor"})
    assert status == 400 and "unknown role" in problem["detail"]
    status, problem = await _call(hub, "PUT", "/api/admin/users/nobody/role", {"role": "clinic"})
    assert status == 404 and "no user 'nobody'" in problem["detail"]
    status, problem = await _call(hub, "POST", "/api/admin/users/nobody/password")
    assert status == 404


async def test_a_reset_password_is_shown_once_and_ends_the_old_one(hub_server: HubServer) -> None:
    hub = hub_server
    first = await _add_user(hub, "nurse", "clinic")
    async with (
        hub.session() as http,
        http.post(hub.url + "/api/admin/users/nurse/password") as response,
    ):
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        reset = await response.json()
    assert reset["username"] == "nurse" and len(reset["password"]) >= 12
    assert (await _sign_in(hub, "nurse", first)).status == 401
    assert (await _sign_in(hub, "nurse", reset["password"])).status == 200
    (record,) = (await _search(hub, action="user.password"))["records"]
    assert record["detail"] == {
        "user": "nurse",
        "field": "password",
        "old": "set",
        "new": "set",
        "generated": True,
    }


async def test_the_last_active_administrator_stays(hub_server: HubServer) -> None:
    hub = hub_server
    # The hub's first-run "admin" and the tests' "test-admin" are the administrators.
    status, _ = await _call(hub, "POST", "/api/admin/users/admin/disable", {"disabled": True})
    assert status == 200
    for method, path, body in [
        ("PUT", "/api/admin/users/test-admin/role", {"role": "clinic"}),
        ("POST", "/api/admin/users/test-admin/disable", {"disabled": True}),
    ]:
        status, problem = await _call(hub, method, path, body)
        assert status == 409, (path, problem)
        assert "last active administrator" in problem["detail"]
    await _add_user(hub, "deputy", "admin")
    status, _ = await _call(hub, "POST", "/api/admin/users/deputy/disable", {"disabled": True})
    assert status == 200  # test-admin is still active
    status, problem = await _call(
        hub, "PUT", "/api/admin/users/test-admin/role", {"role": "clinic"}
    )
    assert status == 409  # a disabled administrator does not count

    status, _ = await _call(hub, "PUT", "/api/admin/users/admin/role", {"role": "clinic"})
    assert status == 200  # not an active administrator: nothing to guard
    status, _ = await _call(hub, "POST", "/api/admin/users/deputy/disable", {"disabled": False})
    assert status == 200
    status, answer = await _call(hub, "PUT", "/api/admin/users/test-admin/role", {"role": "clinic"})
    assert status == 200, answer  # deputy is an active administrator now
    status, users = await _call(hub, "GET", "/api/admin/users", headers=await _deputy(hub))
    roles = {u["username"]: (u["role"], u["disabled"]) for u in users}
    assert roles["deputy"] == ("admin", False) and roles["test-admin"] == ("clinic", False)


async def _deputy(hub: HubServer) -> dict[str, str]:
    _, secret = await issue_token(hub.archive.engine, "deputy")
    return {"Authorization": f"Bearer {secret}"}


async def test_two_administrators_demoting_each_other_leave_one(archive) -> None:
    """Both changes at once, round after round: one of them is refused every time."""
    engine = archive.engine
    survivor = None
    for round_ in range(5):
        one, two = f"one{round_}", f"two{round_}"
        for name in (one, two):
            await create_user(engine, name, "admin", None)
        if survivor is not None:
            await accounts.set_role(engine, survivor, "clinic")
        outcomes = await asyncio.gather(
            accounts.set_role(engine, one, "clinic"),
            accounts.set_disabled(engine, two, True),
            return_exceptions=True,
        )
        assert len([o for o in outcomes if isinstance(o, ChangeRefused)]) == 1, outcomes
        users = await accounts.list_users(engine)
        (survivor,) = [u["username"] for u in users if u["role"] == "admin" and not u["disabled"]]
