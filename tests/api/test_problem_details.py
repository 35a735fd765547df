"""Every door answers an error with one shape: an RFC 9457 problem document.

Each case sends real bad input to the whole hub on a real port (a body that is not JSON, one that
breaks its model, an id nobody has, no credentials, a clinic user on an administrator's route,
a body over the limit, a DICOMweb request for what is not there, a telehealth code nobody
issued, a path no route serves, a method a route does not take) and reads the answer as a
client would: its content type, and a body whose status is the HTTP status and whose detail
says why.
"""

from __future__ import annotations

from http import HTTPStatus

import aiohttp
import pytest
from hubtest import HubServer

from hub.errors import PROBLEM_JSON
from hub.security.accounts import create_user, issue_token


async def _bearer(hub: HubServer, username: str, role: str) -> dict[str, str]:
    await create_user(hub.archive.engine, username, role, None)
    _, secret = await issue_token(hub.archive.engine, username, ttl_seconds=600)
    return {"Authorization": f"Bearer {secret}"}


async def problem_of(resp: aiohttp.ClientResponse, status: int) -> dict:
    """The answer's problem document, checked against the HTTP status it came with."""
    text = await resp.text()
    assert resp.status == status, (resp.status, text[:300])
    assert resp.content_type == PROBLEM_JSON, (resp.content_type, text[:300])
    problem = await resp.json()
    assert problem["type"] == "about:blank", problem
    assert problem["title"] == HTTPStatus(status).phrase, problem
    assert problem["status"] == status, problem
    assert isinstance(problem["detail"], str) and problem["detail"].strip(), problem
    return problem


@pytest.fixture
async def clinic(hub_server: HubServer) -> dict[str, str]:
    return await _bearer(hub_server, "problem-clinic", "clinic")


async def test_a_body_that_is_not_json_is_a_400_problem(hub_server: HubServer) -> None:
    url = f"{hub_server.url}/api/worklist"
    headers = {"Content-Type": "application/json"}
    async with hub_server.session() as http, http.post(url, data=b"{not", headers=headers) as r:
        assert "not JSON" in (await problem_of(r, 400))["detail"]


async def test_a_body_that_breaks_its_model_names_the_field_and_the_rule(
    hub_server: HubServer,
) -> None:
    url = f"{hub_server.url}/api/admin/tokens"
    body = {"username": "test-admin", "days": 99999}
    async with hub_server.session() as http, http.post(url, json=body) as r:
        problem = await problem_of(r, 400)
    assert problem["field"] == "$.days"
    assert "3650" in problem["rule"] and problem["rule"] in problem["detail"]


async def test_an_unknown_id_is_a_404_problem(hub_server: HubServer) -> None:
    async with hub_server.session() as http:
        async with http.get(f"{hub_server.url}/api/worklist/987654") as r:
            assert (await problem_of(r, 404))["detail"] == "no such worklist item"
        async with http.get(f"{hub_server.url}/api/jobs/no-such-job") as r:
            assert "no-such-job" in (await problem_of(r, 404))["detail"]


async def test_no_credentials_is_a_401_problem_with_a_challenge(hub_server: HubServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{hub_server.url}/api/worklist") as r:
        assert (await problem_of(r, 401))["detail"] == "authentication required"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_clinic_user_on_an_admin_route_is_a_403_problem(
    hub_server: HubServer, clinic: dict[str, str]
) -> None:
    url = f"{hub_server.url}/api/admin/users"
    async with aiohttp.ClientSession(headers=clinic) as http, http.get(url) as r:
        problem = await problem_of(r, 403)
    assert problem["detail"].startswith("forbidden")
    assert problem["permission"] == "admin"  # what the route needs


async def test_a_body_over_the_limit_is_a_413_problem(hub_server: HubServer) -> None:
    url = f"{hub_server.url}/api/admin/tokens"
    body = {"username": "test-admin", "label": "x" * (70 * 1024)}
    async with hub_server.session() as http, http.post(url, json=body) as r:
        assert "65536 bytes" in (await problem_of(r, 413))["detail"]


async def test_dicomweb_errors_without_a_dicom_body_are_problems(hub_server: HubServer) -> None:
    base = f"{hub_server.url}/dicomweb"
    async with hub_server.session() as http:
        async with http.get(f"{base}/studies/1.2.3.4/metadata") as r:
            problem = await problem_of(r, 404)
            assert problem["detail"] in r.headers["Warning"]  # PS3.18: the reason there too
        async with http.get(f"{base}/studies", params={"limit": "many"}) as r:
            assert "limit" in (await problem_of(r, 400))["detail"]


async def test_telehealth_errors_are_problems(hub_server: HubServer) -> None:
    async with hub_server.session() as http:
        async with http.post(f"{hub_server.url}/api/telehealth/join", json={"code": "x"}) as r:
            assert (await problem_of(r, 404))["detail"] == "unknown or expired invite code"
        async with http.post(f"{hub_server.url}/api/telehealth/sessions", json=[1]) as r:
            assert (await problem_of(r, 400))["detail"] == "the body must be a JSON object"


async def test_what_aiohttp_refuses_itself_is_a_problem_too(hub_server: HubServer) -> None:
    async with hub_server.session() as http:
        async with http.get(f"{hub_server.url}/api/no-such-thing") as r:
            await problem_of(r, 404)
        async with http.delete(f"{hub_server.url}/api/worklist") as r:
            assert "DELETE" in (await problem_of(r, 405))["detail"]
            assert "POST" in r.headers["Allow"]
        async with http.get(f"{hub_server.url}/static/vendor/no-such-package/a.js") as r:
            assert (await problem_of(r, 404))["detail"] == "unknown vendor package"
