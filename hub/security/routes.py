"""Login, logout and "who am I": the session routes and the login page."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.apispec import described
from hub.errors import Problem, problem
from hub.requestdata import BadInput, json_object
from hub.security import accounts, ratelimit
from hub.security.audit_trail import audit, unknown_name
from hub.security.middleware import PASSWORD_PAGE, SESSION_COOKIE, engine_of, principal

STATIC = Path(__file__).parent / "static"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Credentials(msgspec.Struct):
    username: str
    password: str
    next: str | None = None  # a same-site path to go to after signing in


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect would turn the login page into a phishing aid."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def _credentials(request: web.Request) -> tuple[str, str, str | None, bool]:
    """(username, password, next, is_form) from a JSON body or an HTML form."""
    if request.content_type == "application/json":
        body = await json_object(request)
        is_form = False
    elif request.content_type in FORM_TYPES:
        try:
            body = await request.post()
        except (ValueError, AssertionError, HttpProcessingError):  # UnicodeDecodeError too
            raise BadInput("malformed form body") from None
        is_form = True
    else:
        raise Problem(415, "send JSON or an HTML form")
    fields = {k: body[k] for k in Credentials.__struct_fields__ if k in body}
    try:
        given = msgspec.convert(fields, Credentials)
    except msgspec.ValidationError:
        given = None
    if given is None or not given.username:
        raise BadInput("username and password are required")
    return given.username[:128], given.password[:1024], given.next, is_form


def _answer(is_form: bool, payload: dict, location: str) -> web.Response:
    if is_form:
        return web.Response(status=303, headers={"Location": location})
    return web.json_response(payload, headers={"Cache-Control": "no-store"})


def _refused(is_form: bool, status: int, reason: str, location: str) -> web.Response:
    """A form goes back to the login page, which says why; a JSON call gets the problem."""
    if is_form:
        return web.Response(status=303, headers={"Location": location})
    return problem(status, reason, headers={"Cache-Control": "no-store"})


async def _refused_sign_in(
    engine: AsyncEngine,
    username: str,
    address: str,
    action: str,
    outcome: str,
    detail: dict | None = None,
) -> None:
    """Audit a refused sign-in under the account's name, or a fingerprint of a name that is
    no account."""
    known = await accounts.account_exists(engine, username)
    await audit(
        engine,
        who=username if known else unknown_name(engine, username),
        role="-",
        action=action,
        outcome=outcome,
        source=address,
        detail=detail,
    )


@described(
    "Sign in with a user name and password (JSON or an HTML form); sets the session cookie",
    body=Credentials,
    answers={
        401: "wrong user name or password",
        415: "the body is neither JSON nor an HTML form",
        429: "too many failed sign-ins; see Retry-After",
    },
)
async def login(request: web.Request) -> web.Response:
    engine = engine_of(request)
    username, password, nxt, is_form = await _credentials(request)
    address = request.remote or "-"
    claim = await ratelimit.claim(engine, username, address)
    if isinstance(claim, ratelimit.Refusal):
        detail = {"scope": claim.scope, "retry_after": claim.retry_after}
        await _refused_sign_in(engine, username, address, "login.throttled", "denied", detail)
        message = f"too many failed logins; try again in {claim.retry_after} s"
        response = _refused(is_form, 429, message, "/login?error=locked")
        response.headers["Retry-After"] = str(claim.retry_after)
        return response

    who = await accounts.check_password(engine, username, password)
    if who is None:
        await _refused_sign_in(engine, username, address, "login", "failure")
        return _refused(is_form, 401, "invalid credentials", "/login?error=1")
    await ratelimit.succeeded(engine, claim, username, address)

    _, secret = await accounts.issue_token(
        engine, who.user, kind="session", ttl_seconds=accounts.SESSION_SECONDS
    )
    await audit(
        engine, who=who.user, role=who.role, action="login", outcome="success", source=address
    )
    target = _safe_next(nxt)
    if who.password_temporary:  # the page says why, then goes on to the target
        target = f"{PASSWORD_PAGE}?next={quote(target, safe='/')}"
    answer = {
        "user": who.user,
        "role": who.role,
        "next": target,
        "password_temporary": who.password_temporary,
    }
    response = _answer(is_form, answer, target)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=accounts.SESSION_SECONDS,
        path="/",
        httponly=True,
        secure=request.secure,
        samesite="Strict",
    )
    return response


@described("Sign out: ends the session of the cookie sent")
async def logout(request: web.Request) -> web.Response:
    engine = engine_of(request)
    who = principal(request)
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        await accounts.revoke_secret(engine, secret)
    if who is not None and who.via == "session":
        await audit(
            engine,
            who=who.user,
            role=who.role,
            action="logout",
            outcome="success",
            source=request.remote,
        )
    if request.content_type == "application/x-www-form-urlencoded":
        response = web.Response(status=303, headers={"Location": "/login"})
    else:
        response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@described("Who the caller is: user, role and how it signed in")
async def me(request: web.Request) -> web.Response:
    who = principal(request)
    assert who is not None  # the middleware lets account.* through only with a principal
    return web.json_response(who.as_json(), headers={"Cache-Control": "no-store"})


async def login_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "login.html")


async def login_script(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "login.js")


async def gate_style(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "gate.css")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page, name="public.login.page")
    app.router.add_get("/login/login.js", login_script, name="public.login.script")
    app.router.add_get("/login/gate.css", gate_style, name="public.login.style")
    app.router.add_post("/api/login", login, name="public.login")
    app.router.add_post("/api/logout", logout, name="public.logout")
    app.router.add_get("/api/me", me, name="account.me")
