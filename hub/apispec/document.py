"""The OpenAPI 3.1 document of every described route under /api, read from the router table.

Paths, methods and path parameters come from the router; summaries, query parameters, models
and statuses from each handler's ``@described``; who may call an operation from the access
rules of ``hub.security.policy`` and how large its body may be from the security middleware.
Models become JSON Schema through msgspec, which reads the same dataclasses and structs that
the handlers decode bodies into.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version

import msgspec
from aiohttp import web

from hub.apispec.describe import Operation, operation_of
from hub.security.middleware import body_limit
from hub.security.policy import AUTHENTICATED, ROLES, rule_for

API_PREFIX = "/api/"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SCHEMA_REF = "#/components/schemas/{name}"
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "why the request was refused"}},
}
# RFC 9457: the refusals that already answer as problem documents (the others follow).
PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "why the request was refused"},
    },
}
ERROR_CONTENT = {
    "application/json": {"schema": {"$ref": SCHEMA_REF.format(name="Error")}},
    "application/problem+json": {"schema": {"$ref": SCHEMA_REF.format(name="Problem")}},
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"},
    "session": {"type": "apiKey", "in": "cookie", "name": "tessera_session"},
}


def api_routes(app: web.Application) -> Iterator[tuple[str, str, web.AbstractRoute]]:
    """(method, OpenAPI path, route) of every route under /api."""
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith(API_PREFIX) and route.method in METHODS:
            yield route.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path), route


def undescribed(app: web.Application) -> list[str]:
    return [f"{m} {p}" for m, p, route in api_routes(app) if operation_of(route.handler) is None]


def openapi_document(app: web.Application) -> dict:
    models: list[type] = []
    paths: dict[str, dict] = {}
    for method, path, route in api_routes(app):
        described = operation_of(route.handler)
        if described is None:
            continue
        name = route.resource.name if route.resource is not None else None
        paths.setdefault(path, {})[method.lower()] = _operation(
            method, path, name, described, models
        )
    refs, schemas = msgspec.json.schema_components(models, ref_template=SCHEMA_REF)
    by_model = dict(zip(models, refs, strict=True))
    for operations in paths.values():
        for operation in operations.values():
            _resolve_models(operation, by_model)
    schemas["Error"] = ERROR_SCHEMA
    schemas["Problem"] = PROBLEM_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tessera hub API", "version": _version()},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }


def _operation(
    method: str, path: str, name: str | None, described: Operation, models: list[type]
) -> dict:
    _, permission = rule_for(name)
    operation: dict = {
        "operationId": name if method in ("GET", "POST") else f"{name}.{method.lower()}",
        "summary": described.summary,
        "tags": [(name or "").split(".")[0]],
        "description": _who_may(permission),
        "parameters": _parameters(path, described),
        "responses": _responses(described, permission, body_limit(name), models),
    }
    if permission is None:
        operation["security"] = []
    if described.body is not None:
        _remember(described.body, models)
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"x-model": described.body}}},
        }
    return operation


def _who_may(permission: str | None) -> str:
    if permission is None:
        return "Open to everyone, without signing in."
    if permission == AUTHENTICATED:
        return "For any signed-in user."
    roles = sorted(role for role, granted in ROLES.items() if permission in granted)
    return f"Needs the `{permission}` permission (roles: {', '.join(roles)})."


def _parameters(path: str, described: Operation) -> list[dict]:
    in_path = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in re.findall(r"\{(\w+)\}", path)
    ]
    in_query = [
        {"name": n, "in": "query", "description": meaning, "schema": {"type": "string"}}
        for n, meaning in described.query.items()
    ]
    return in_path + in_query


def _responses(
    described: Operation, permission: str | None, limit: int | None, models: list[type]
) -> dict:
    content: dict = {"schema": {"type": "string"}}
    if described.produces == "application/json":
        content = {"schema": {}}
        if described.returns is not None:
            _remember(described.returns, models)
            content = {"schema": {"x-model": described.returns}}
    answers = {described.status: {"description": _phrase(described.status)}}
    if described.status != 204:
        answers[described.status]["content"] = {described.produces: content}
    refusals = {400: "the request is malformed; the body says why"}
    if permission is not None:
        refusals |= {401: "not signed in", 403: "the caller may not do this"}
    if described.body is not None and limit is not None:
        refusals[413] = f"the body is over {limit} bytes"
    for status, meaning in {**refusals, **described.answers}.items():
        answers[status] = {"description": meaning, "content": ERROR_CONTENT}
    return {str(status): answer for status, answer in sorted(answers.items())}


def _phrase(status: int) -> str:
    return HTTPStatus(status).phrase


def _remember(model: type, models: list[type]) -> None:
    if model not in models:
        models.append(model)


def _resolve_models(node: object, by_model: dict[type, dict]) -> None:
    """Replace each ``{"x-model": T}`` placeholder by T's schema reference."""
    if isinstance(node, dict):
        if "x-model" in node:
            node.update(by_model[node.pop("x-model")])
        for value in node.values():
            _resolve_models(value, by_model)
    elif isinstance(node, list):
        for value in node:
            _resolve_models(value, by_model)


def _version() -> str:
    try:
        return version("tessera-hub")
    except PackageNotFoundError:
        return "0"
