"""Administration API (``admin.*``): users, tokens, the audit trail and the DIMSE allow-list."""

from __future__ import annotations

from aiohttp import web

from hub.requestdata import json_object, parse_int
from hub.security import accounts, audit_trail, dimse_acl, passwords
from hub.security.accounts import AccountError
from hub.security.keys import audit_key
from hub.security.middleware import SECURITY_KEY, engine_of, principal

MAX_DAYS = 3650


async def _body(request: web.Request) -> dict:
    return await json_object(request)


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
    return web.json_response({"error": str(error)}, status=400)


async def list_users(request: web.Request) -> web.Response:
    return web.json_response(await accounts.list_users(engine_of(request)))


async def create_user(request: web.Request) -> web.Response:
    body = await _body(request)
    password = body.get("password")
    if password is not None and not isinstance(password, str):
        return _refused(ValueError("password must be a string"))
    generated = None
    if password is None and not body.get("service_account"):
        password = generated = passwords.generate()
    try:
        await accounts.create_user(
            engine_of(request), str(body.get("username", "")), str(body.get("role", "")), password
        )
    except AccountError as e:
        return _refused(e)
    await _record(request, "user.add", {"user": body["username"], "role": body["role"]})
    answer = {"username": body["username"], "role": body["role"]}
    if generated:
        answer["password"] = generated  # shown once
    return web.json_response(answer, status=201, headers={"Cache-Control": "no-store"})


async def disable_user(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    disabled = bool((await _body(request)).get("disabled", True))
    try:
        await accounts.set_disabled(engine_of(request), username, disabled)
    except AccountError as e:
        return web.json_response({"error": str(e)}, status=404)
    await _record(request, "user.disable" if disabled else "user.enable", {"user": username})
    return web.json_response({"username": username, "disabled": disabled})


async def list_tokens(request: web.Request) -> web.Response:
    rows = await accounts.list_tokens(engine_of(request), request.query.get("user"))
    return web.json_response(rows)


async def issue_token(request: web.Request) -> web.Response:
    body = await _body(request)
    days = body.get("days", 30)
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 <= days <= MAX_DAYS:
        return _refused(ValueError(f"days must be a number from 0 to {MAX_DAYS}"))
    scopes = body.get("scopes")
    if scopes is not None and not (
        isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)
    ):
        return _refused(ValueError("scopes must be a list of permissions"))
    try:
        token_id, secret = await accounts.issue_token(
            engine_of(request),
            str(body.get("username", "")),
            scopes=scopes,
            ttl_seconds=days * 86400 if days else None,
            label=str(body.get("label", ""))[:128],
        )
    except AccountError as e:
        return _refused(e)
    await _record(request, "token.issue", {"user": body["username"], "token": token_id})
    return web.json_response(
        {"id": token_id, "token": secret}, status=201, headers={"Cache-Control": "no-store"}
    )


async def revoke_token(request: web.Request) -> web.Response:
    token_id = parse_int(request.match_info["id"], "token id")
    if not await accounts.revoke_token(engine_of(request), token_id):
        return web.json_response({"error": f"no active token {token_id}"}, status=404)
    await _record(request, "token.revoke", {"token": token_id})
    return web.json_response({"id": token_id, "revoked": True})


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


async def export_audit(request: web.Request) -> web.StreamResponse:
    since = parse_int(request.query.get("since", "0"), "since")
    await _record(request, "audit.export", {"since": since})
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    async for line in audit_trail.export_syslog(engine_of(request), since_seq=since):
        await response.write(line.encode() + b"\n")
    await response.write_eof()
    return response


async def list_ae(request: web.Request) -> web.Response:
    return web.json_response(await dimse_acl.list_ae(engine_of(request)))


async def allow_ae(request: web.Request) -> web.Response:
    ae_title = request.match_info["ae"]
    body = await _body(request)
    services = body.get("services")
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        return _refused(ValueError("services must be a list"))
    binding = {k: body.get(k) for k in ("user", "role", "address", "certificate")}
    if not all(v is None or isinstance(v, str) for v in binding.values()):
        return _refused(ValueError("user, role, address and certificate must be strings"))
    try:
        await dimse_acl.allow_ae(
            engine_of(request), ae_title, services, **binding, note=str(body.get("note", ""))
        )
    except ValueError as e:
        return _refused(e)
    await _record(request, "ae.allow", {"ae": ae_title, "services": services, **binding})
    return web.json_response({"ae_title": ae_title, "services": services, **binding})


async def remove_ae(request: web.Request) -> web.Response:
    ae_title = request.match_info["ae"]
    try:
        removed = await dimse_acl.remove_ae(engine_of(request), ae_title)
    except ValueError as e:
        return _refused(e)
    if not removed:
        return web.json_response({"error": f"{ae_title} is not on the list"}, status=404)
    await _record(request, "ae.remove", {"ae": ae_title})
    return web.json_response({"ae_title": ae_title, "removed": True})


def add_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/admin/users", list_users, name="admin.users.list")
    r.add_post("/api/admin/users", create_user, name="admin.users.create")
    r.add_post("/api/admin/users/{username}/disable", disable_user, name="admin.users.disable")
    r.add_get("/api/admin/tokens", list_tokens, name="admin.tokens.list")
    r.add_post("/api/admin/tokens", issue_token, name="admin.tokens.issue")
    r.add_delete("/api/admin/tokens/{id}", revoke_token, name="admin.tokens.revoke")
    r.add_get("/api/admin/audit/verify", verify_audit, name="admin.audit.verify")
    r.add_get("/api/admin/audit/export", export_audit, name="admin.audit.export")
    r.add_get("/api/admin/ae", list_ae, name="admin.ae.list")
    r.add_put("/api/admin/ae/{ae}", allow_ae, name="admin.ae.allow")
    r.add_delete("/api/admin/ae/{ae}", remove_ae, name="admin.ae.remove")
