"""A signed-in user chooses a new password: the page and the route.

A session signed in with a one-time password (generated when the account was made, or by a
reset) may do nothing else until it has chosen one: the middleware sends its pages here and
refuses its other calls.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from hub.apispec import described
from hub.errors import problem
from hub.requestdata import json_model
from hub.security import accounts, ratelimit
from hub.security.accounts import AccountError, Principal, WrongPassword
from hub.security.audit_trail import audit
from hub.security.middleware import PASSWORD_PAGE, engine_of, principal
from hub.security.routes import STATIC

Secret = Annotated[str, msgspec.Meta(max_length=1024)]


class NewPassword(msgspec.Struct, forbid_unknown_fields=True):
    current: Secret
    new: Secret


@described(
    "Change the caller's own password, giving the current one; the account's other sessions "
    "end, this one goes on",
    body=NewPassword,
    answers={
        400: "the new password is too weak, or the current one",
        403: "the current password is not right, or the caller is an API token",
        429: "too many wrong passwords for this account; see Retry-After",
    },
)
async def change_password(request: web.Request) -> web.Response:
    who = principal(request)
    assert who is not None  # account.* needs a principal
    if who.via != "session":
        return problem(403, "a password is changed from a signed-in session, not by API token")
    body = await json_model(request, NewPassword)
    engine = engine_of(request)
    # Guessing the current password from a session someone left open counts as guessing it
    # at the sign-in: the same counters, charged before the password is checked.
    address = request.remote or "-"
    claim = await ratelimit.claim(engine, who.user, address)
    if isinstance(claim, ratelimit.Refusal):
        await _record(request, who, "denied", {"throttled": claim.scope})
        response = problem(429, f"too many wrong passwords; try again in {claim.retry_after} s")
        response.headers["Retry-After"] = str(claim.retry_after)
        return response
    try:
        await accounts.change_own_password(engine, who, body.current, body.new)
    except WrongPassword as exc:
        await _record(request, who, "failure")
        return problem(403, str(exc))
    except AccountError as exc:  # the current password was right: the claim is given back
        await ratelimit.succeeded(engine, claim, who.user, address)
        return problem(400, str(exc))
    await ratelimit.succeeded(engine, claim, who.user, address)
    await _record(request, who, "success")
    return web.json_response(
        {"user": who.user, "changed": True}, headers={"Cache-Control": "no-store"}
    )


async def _record(
    request: web.Request, who: Principal, outcome: str, more: dict[str, str] | None = None
) -> None:
    await audit(
        engine_of(request),
        who=who.user,
        role=who.role,
        action="user.password.change",
        outcome=outcome,
        source=request.remote,
        detail={"user": who.user, "was_one_time": who.password_temporary, **(more or {})},
    )


async def password_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "password.html", headers={"Cache-Control": "no-store"})


async def password_script(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "password.js")


def add_routes(app: web.Application) -> None:
    app.router.add_get(PASSWORD_PAGE, password_page, name="account.password.page")
    app.router.add_get(PASSWORD_PAGE + ".js", password_script, name="public.password.script")
    app.router.add_post("/api/account/password", change_password, name="account.password")
