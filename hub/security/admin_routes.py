"""Administration API (``admin.*``): users, tokens, the audit trail and the DIMSE allow-list."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated

import msgspec
from aiohttp import web

from hub.apispec import described
from hub.configstore.api import editor, version_param
from hub.configstore.entries import VersionConflict
from hub.errors import problem
from hub.requestdata import json_model, parse_int
from hub.security import accounts, audit_search, audit_trail, dimse_acl, passwords
from hub.security.accounts import AccountError, ChangeRefused, UnknownUser
from hub.security.audit_search import AuditPage, AuditSearch, SearchError
from hub.security.keys import audit_key
from hub.security.middleware import SECURITY_KEY, engine_of, principal

MAX_DAYS = 3650
VERSION_ANSWERS = {409: "the entry changed since it was read (conflict: version)"}
Text = Annotated[str, msgspec.Meta(max_length=1024)]


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    username: Text
    role: Text
    password: Text | None = None  # generated (and shown once) when absent
    service_account: bool = False  # no password at all: the account signs in by token only


class Disabled(msgspec.Struct, forbid_unknown_fields=True):
    disabled: bool = True


class NewRole(msgspec.Struct, forbid_unknown_fields=True):
    role: Text


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    username: Text
    days: Annotated[float, msgspec.Meta(ge=0, le=MAX_DAYS)] = 30  # 0: never expires
    scopes: list[Text] | None = None  # a subset of the role's permissions
    label: Annotated[str, msgspec.Meta(max_length=128)] = ""


class AllowedAe(msgspec.Struct, forbid_unknown_fields=True):
    services: list[Text]
    user: Text | None = None
    role: Text | None = None
    address: Text | None = None
    certificate: Text | None = None
    note: Text = ""
    version: Annotated[int, msgspec.Meta(ge=0)] | None = None  # 0: the AE is not listed yet


async def _record(request: web.Request, action: str, detail: dict) -> None:
    who = principal(request)
    assert who is not None
    await audit_trail.audit(
        engine_of(request),
        who=who.user,
        role=who.role,
        action=action,
        outcome="success",
        source=request.remote,
        detail=detail,
    )


def _refused(error: Exception) -> web.Response:
    return problem(400, str(error))


def _account_problem(error: AccountError) -> web.Response:
    if isinstance(error, UnknownUser):
        return problem(404, str(error))
    if isinstance(error, ChangeRefused):
        return problem(409, str(error))
    return problem(400, str(error))


@described("The user accounts")
async def list_users(request: web.Request) -> web.Response:
    return web.json_response(await accounts.list_users(engine_of(request)))


@described(
    "Add a user; a generated password is in the answer, once, and is replaced at the first sign-in",
    body=NewUser,
    status=201,
)
async def create_user(request: web.Request) -> web.Response:
    body = await json_model(request, NewUser)
    password, generated = body.password, None
    if password is None and not body.service_account:
        password = generated = passwords.generate()
    try:
        await accounts.create_user(
            engine_of(request), body.username, body.role, password, temporary=bool(generated)
        )
    except AccountError as e:
        return _refused(e)
    await _record(request, "user.add", {"user": body.username, "role": body.role})
    answer = {"username": body.username, "role": body.role}
    if generated:
        answer["password"] = generated  # shown once
    return web.json_response(answer, status=201, headers={"Cache-Control": "no-store"})


@described(
    "Disable a user (or enable one again), ending its sessions",
    body=Disabled,
    answers={404: "no such user", 409: "the user is the last active administrator"},
)
async def disable_user(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    disabled = (await json_model(request, Disabled)).disabled
    try:
        change = await accounts.set_disabled(engine_of(request), username, disabled)
    except AccountError as e:
        return _account_problem(e)
    await _record(request, "user.disable" if disabled else "user.enable", change.as_detail())
    return web.json_response({"username": username, "disabled": disabled})


@described(
    "Give a user another role; its sessions and tokens carry the new role at once",
    body=NewRole,
    answers={404: "no such user", 409: "the user is the last active administrator"},
)
async def set_role(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    role = (await json_model(request, NewRole)).role
    try:
        change = await accounts.set_role(engine_of(request), username, role)
    except AccountError as e:
        return _account_problem(e)
    await _record(request, "user.role", change.as_detail())
    return web.json_response({"username": username, "role": role})


@described(
    "Reset a user's password to a generated one, in the answer once; ends its sessions, and "
    "the next sign-in must choose a new one",
    answers={404: "no such user"},
)
async def reset_password(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    password = passwords.generate()
    try:
        change = await accounts.set_password(engine_of(request), username, password, temporary=True)
    except AccountError as e:
        return _account_problem(e)
    await _record(request, "user.password", change.as_detail() | {"generated": True})
    return web.json_response(
        {"username": username, "password": password}, headers={"Cache-Control": "no-store"}
    )


@described("The API tokens, without their secrets", query={"user": "only this user's tokens"})
async def list_tokens(request: web.Request) -> web.Response:
    rows = await accounts.list_tokens(engine_of(request), request.query.get("user"))
    return web.json_response(rows)


@described("Issue an API token; its secret is in the answer, once", body=NewToken, status=201)
async def issue_token(request: web.Request) -> web.Response:
    body = await json_model(request, NewToken)
    try:
        token_id, secret = await accounts.issue_token(
            engine_of(request),
            body.username,
            scopes=body.scopes,
            ttl_seconds=body.days * 86400 if body.days else None,
            label=body.label,
        )
    except AccountError as e:
        return _refused(e)
    await _record(request, "token.issue", {"user": body.username, "token": token_id})
    return web.json_response(
        {"id": token_id, "token": secret}, status=201, headers={"Cache-Control": "no-store"}
    )


@described("Revoke a token at once, on every node", answers={404: "no such active token"})
async def revoke_token(request: web.Request) -> web.Response:
    token_id = parse_int(request.match_info["id"], "token id")
    if not await accounts.revoke_token(engine_of(request), token_id):
        return problem(404, f"no active token {token_id}")
    await _record(request, "token.revoke", {"token": token_id})
    return web.json_response({"id": token_id, "revoked": True})


@described("Check the audit trail's hash chain and signed head")
async def verify_audit(request: web.Request) -> web.Response:
    engine = engine_of(request)
    state = request.app[SECURITY_KEY]
    data_dir = state.data_dir
    assert data_dir is not None
    log = audit_trail.attach(engine, data_dir, state.settings.audit_key)
    await log.flush()
    verdict = await audit_trail.verify(
        engine, audit_key(data_dir, state.settings.audit_key), audit_trail.head_path_for(data_dir)
    )
    return web.json_response(
        {"ok": verdict.ok, "records": verdict.records, "problems": verdict.problems}
    )


@described(
    "Search the audit trail, newest first, a page at a time",
    returns=AuditPage,
    query={
        "who": "the user (or system) that acted",
        "patient": "the patient ID the record names",
        "study": "the Study Instance UID the record names",
        "action": "the action, e.g. login; ending in a dot, every action under it (ae.)",
        "outcome": "success, failure or denied",
        "since": "records at or after this time: ISO 8601 (UTC unless an offset is given) or "
        "seconds since 1970",
        "until": "records before this time, as since",
        "before": "records before this sequence number: the `next` of the previous page",
        "limit": f"records per page, 1 to {audit_search.MAX_LIMIT} "
        f"({audit_search.DEFAULT_LIMIT} by default)",
    },
    answers={400: "a parameter is unknown, repeated or malformed; `parameter` names it"},
)
async def search_audit(request: web.Request) -> web.Response:
    try:
        wanted = AuditSearch.from_pairs(request.query.items())
    except SearchError as e:
        return problem(400, str(e), parameter=e.parameter)
    engine = engine_of(request)
    await audit_trail.flush(engine)  # what was just done is on the trail
    page = await audit_search.search(engine, wanted)
    await _record(request, "audit.search", wanted.as_detail())
    return web.json_response(msgspec.to_builtins(page))


@described(
    "The audit trail as syslog lines (RFC 5424), oldest first",
    produces="text/plain",
    query={"since": "only records after this sequence number"},
)
async def export_audit(request: web.Request) -> web.StreamResponse:
    since = parse_int(request.query.get("since", "0"), "since")
    await _record(request, "audit.export", {"since": since})
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    async for line in audit_trail.export_syslog(engine_of(request), since_seq=since):
        await response.write(line.encode() + b"\n")
    await response.write_eof()
    return response


@described("The DIMSE allow-list: calling AE titles and what each may do")
async def list_ae(request: web.Request) -> web.Response:
    return web.json_response(await dimse_acl.list_ae(engine_of(request)))


@described(
    "Allow a calling AE title the given DIMSE services; with ``version``, only while the "
    "entry is still at it",
    body=AllowedAe,
    answers=VERSION_ANSWERS,
)
async def allow_ae(request: web.Request) -> web.Response:
    body = await json_model(request, AllowedAe)
    binding = {k: getattr(body, k) for k in ("user", "role", "address", "certificate")}
    edit = dimse_acl.allow_ae(
        engine_of(request),
        request.match_info["ae"],
        body.services,
        **binding,
        note=body.note,
        version=body.version,
        who=editor(request),
    )
    return await _answer_ae_edit(request, "ae.allow", edit)


@described(
    "Take an AE title off the allow-list",
    query={"version": "refuse unless the entry is still at this version"},
    answers={**VERSION_ANSWERS, 404: "the AE title is not listed"},
)
async def remove_ae(request: web.Request) -> web.Response:
    ae_title = request.match_info["ae"]
    edit = dimse_acl.remove_ae(engine_of(request), ae_title, version_param(request))
    return await _answer_ae_edit(request, "ae.remove", edit, missing=ae_title)


async def _answer_ae_edit(
    request: web.Request,
    action: str,
    edit: Awaitable[dimse_acl.AeChange | None],
    missing: str = "",
) -> web.Response:
    try:
        change = await edit
    except VersionConflict as exc:
        return problem(409, str(exc), conflict="version")
    except ValueError as exc:
        return _refused(exc)
    if change is None:
        return problem(404, f"{missing} is not on the list")
    await _record(request, action, change.audit_detail())
    answer = change.new or {"ae_title": change.ae_title, "removed": True}
    return web.json_response(answer)


def add_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/admin/users", list_users, name="admin.users.list")
    r.add_post("/api/admin/users", create_user, name="admin.users.create")
    r.add_post("/api/admin/users/{username}/disable", disable_user, name="admin.users.disable")
    r.add_put("/api/admin/users/{username}/role", set_role, name="admin.users.role")
    r.add_post("/api/admin/users/{username}/password", reset_password, name="admin.users.password")
    r.add_get("/api/admin/tokens", list_tokens, name="admin.tokens.list")
    r.add_post("/api/admin/tokens", issue_token, name="admin.tokens.issue")
    r.add_delete("/api/admin/tokens/{id}", revoke_token, name="admin.tokens.revoke")
    r.add_get("/api/admin/audit", search_audit, name="admin.audit.search")
    r.add_get("/api/admin/audit/verify", verify_audit, name="admin.audit.verify")
    r.add_get("/api/admin/audit/export", export_audit, name="admin.audit.export")
    r.add_get("/api/admin/ae", list_ae, name="admin.ae.list")
    r.add_put("/api/admin/ae/{ae}", allow_ae, name="admin.ae.allow")
    r.add_delete("/api/admin/ae/{ae}", remove_ae, name="admin.ae.remove")
