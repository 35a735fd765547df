"""The API describes itself: every JSON route under /api is in /api/openapi.json, the document
is valid OpenAPI 3.1, and request bodies are checked against the models it shows."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from openapi_spec_validator import validate

from hub.apispec.document import api_routes, openapi_document, undescribed
from hub.errors import PROBLEM_JSON
from hub.security.accounts import create_user, issue_token


async def _token(hub_server, role: str) -> dict[str, str]:
    engine = hub_server.archive.engine
    await create_user(engine, f"api-{role}", role, None)
    _, secret = await issue_token(engine, f"api-{role}", ttl_seconds=600)
    return {"Authorization": f"Bearer {secret}"}


def test_every_api_route_is_described(hub_server) -> None:
    assert not undescribed(hub_server.app), "describe these routes with @described(...)"


def test_an_undescribed_route_is_flagged() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/api/things/{id}", handler, name="things.read")
    assert undescribed(app) == ["GET /api/things/{id}"]


async def test_the_served_document_is_valid_and_covers_the_routes(hub_server) -> None:
    headers = await _token(hub_server, "clinic")
    url = f"{hub_server.url}/api/openapi.json"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        assert resp.status == 200
        document = await resp.json()
    validate(document)
    served = {(m.lower(), p) for p, ops in document["paths"].items() for m in ops}
    routed = {(m.lower(), p) for m, p, _ in api_routes(hub_server.app)}
    assert served == routed
    token_body = document["paths"]["/api/admin/tokens"]["post"]["requestBody"]
    ref = token_body["content"]["application/json"]["schema"]["$ref"]
    model = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert model["required"] == ["username"]
    assert model["properties"]["days"]["maximum"] == 3650
    issue = document["paths"]["/api/admin/tokens"]["post"]
    assert "admin" in issue["description"] and "clinic" not in issue["description"]
    assert document["paths"]["/api/login"]["post"]["security"] == []


def test_path_parameters_follow_the_router(hub_server) -> None:
    document = openapi_document(hub_server.app)
    revoke = document["paths"]["/api/admin/tokens/{id}"]["delete"]
    assert [(p["name"], p["in"]) for p in revoke["parameters"]] == [("id", "path")]
    assert set(revoke["responses"]) >= {"200", "401", "403", "404"}


def test_every_error_answer_is_the_problem_schema(hub_server) -> None:
    document = openapi_document(hub_server.app)
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    errors = [
        (f"{method} {path} {status}", answer)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, answer in operation["responses"].items()
        if int(status) >= 400
    ]
    assert len(errors) > len(document["paths"])  # every operation has some (400 at least)
    for where, answer in errors:
        assert answer["content"] == {
            PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
        }, where
    assert "Error" not in document["components"]["schemas"]


async def test_the_document_needs_a_signed_in_caller(hub_server) -> None:
    url = f"{hub_server.url}/api/openapi.json"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 401


async def test_a_body_that_breaks_its_model_names_the_field(hub_server) -> None:
    headers = await _token(hub_server, "admin")
    cases = [
        ({"username": 5}, "$.username"),
        ({"username": "api-admin", "days": 99999}, "$.days"),
        ({"username": "api-admin", "scopes": "admin"}, "$.scopes"),
        ({"username": "api-admin", "expires": 1}, "$.expires"),
        ({}, "$.username"),
    ]
    async with aiohttp.ClientSession() as session:
        for body, field in cases:
            url = f"{hub_server.url}/api/admin/tokens"
            async with session.post(url, json=body, headers=headers) as resp:
                assert resp.status == 400, body
                answer = await resp.json()
                assert answer["field"] == field, body
                assert field.removeprefix("$.") in answer["detail"], body


async def test_a_body_over_its_limit_is_413_as_documented(hub_server) -> None:
    document = openapi_document(hub_server.app)
    assert "413" in document["paths"]["/api/admin/tokens"]["post"]["responses"]
    assert "413" not in document["paths"]["/api/admin/tokens/{id}"]["delete"]["responses"]
    headers = await _token(hub_server, "admin")
    body = {"username": "api-admin", "label": "x" * (70 * 1024)}
    async with aiohttp.ClientSession() as session:
        url = f"{hub_server.url}/api/admin/tokens"
        async with session.post(url, json=body, headers=headers) as resp:
            assert resp.status == 413
            assert "65536 bytes" in (await resp.json())["detail"]


def test_the_conformance_statement_is_described_and_open(hub_server) -> None:
    document = openapi_document(hub_server.app)
    validate(document)
    operation = document["paths"]["/api/conformance"]["get"]
    assert operation["summary"].startswith("The DICOM conformance statement")
    assert operation["security"] == [] and operation["description"].startswith("Open to everyone")
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    model = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(model["properties"]) == {"product", "dimse", "dicomweb", "security"}
