"""The request gate: who is calling, may they use this route, and the response hardening."""

from __future__ import annotations

import asyncio
import html
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from aiohttp import hdrs, web
from aiohttp.web_exceptions import NotAppKeyWarning
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import SecuritySettings
from hub.errors import problem
from hub.security import accounts
from hub.security.access_audit import record_read
from hub.security.accounts import Principal
from hub.security.audit_trail import audit
from hub.security.policy import ROLES, decide, rule_for

SESSION_COOKIE = "tessera_session"
FORBIDDEN_PAGE = Path(__file__).parent / "static" / "forbidden.html"
PASSWORD_PAGE = "/account/password"
WHILE_TEMPORARY = frozenset({"account.me", "account.password", "account.password.page"})

# Request limits, by route area. Bodies of login, account and admin calls are small; uploads
# (STOW, slide chunks) stream and are bounded by Settings.max_upload_bytes in their handlers.
SMALL_BODY_AREAS = ("public", "account", "admin", "page", "worklist", "forward")
SMALL_BODY_BYTES = 64 * 1024
# Handlers of those areas answer quickly; a request still running after this is cut off (504).
# Streaming areas (DICOMweb, uploads, telehealth WebSockets) have no overall limit: they are
# bounded by the server's keep-alive and the peers' own timeouts.
SMALL_REQUEST_SECONDS = 30.0
# Routes of those areas that stream long answers (the whole audit trail).
LONG_RUNNING = frozenset({"admin.audit.export", "admin.audit.verify"})

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class SecurityState:
    """What the security package keeps on the application (``app[SECURITY_KEY]``)."""

    engine: AsyncEngine | None = None
    data_dir: Path | None = None
    generated_admin_password: str | None = None
    primary: bool = True
    settings: SecuritySettings = field(default_factory=SecuritySettings)


SECURITY_KEY: web.AppKey[SecurityState] = web.AppKey("security", SecurityState)


def principal(request: web.Request) -> Principal | None:
    """The caller of this request (None only on public routes called without credentials)."""
    return request.get("principal")


def engine_of(request: web.Request) -> AsyncEngine:
    engine = request.app[SECURITY_KEY].engine
    if engine is None:
        raise RuntimeError("security not started (the cleanup context did not run)")
    return engine


def _area(name: str | None) -> str:
    return (name or "").split(".", 1)[0]


def body_limit(name: str | None) -> int | None:
    """The most bytes a request body of this route may have here (413 past it); None where
    the handler bounds its own body."""
    return SMALL_BODY_BYTES if _area(name) in SMALL_BODY_AREAS else None


def _forbidden(reason: str, *, permission: str | None = None) -> web.Response:
    """A 403; ``permission`` (what the route needs) tells a policy refusal apart."""
    if permission is None:
        return problem(403, reason)
    return problem(403, reason, permission=permission)


def forbidden_page(who: Principal, permission: str) -> web.Response:
    """The 403 a browser shows for a page the account's role may not open."""
    holders = [role for role, granted in ROLES.items() if permission in granted]
    reason = f"this page needs the {permission} permission, which {who.user} ({who.role}) lacks."
    reason = ("Administrators only: " if holders == ["admin"] else "Not allowed: ") + reason
    body = FORBIDDEN_PAGE.read_text().replace("{reason}", html.escape(reason))
    return web.Response(status=403, text=body, content_type="text/html")


def _same_origin(request: web.Request) -> bool:
    """For cookie sessions, unsafe methods must come from our own pages (CSRF defence)."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True  # SameSite=Strict already keeps the cookie off cross-site requests
    return urlsplit(origin).netloc == request.host


def _writes(request: web.Request) -> bool:
    """Unsafe methods and WebSocket handshakes (a socket acts with the user's rights)."""
    upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
    return request.method in UNSAFE_METHODS or upgrade


async def _resolve(request: web.Request) -> tuple[Principal | None, str | None]:
    """(principal, why the credentials were refused) from a Bearer token or the session cookie."""
    engine = engine_of(request)
    auth = request.headers.get(hdrs.AUTHORIZATION)
    if auth is not None:
        scheme, _, secret = auth.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None, "unsupported authorization scheme"
        found = await accounts.resolve_token(engine, secret.strip())
        if found is None or found.via != "token":
            return None, "invalid or expired token"
        return found, None
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = await accounts.resolve_token(engine, cookie)
        if found is not None and found.via == "session":
            return found, None
    return None, None


def _while_temporary(name: str | None) -> bool:
    """What a session with a one-time password may still reach: the public routes, who it
    is, and the choice of a new password."""
    return (name or "").startswith("public.") or name in WHILE_TEMPORARY


def _choose_first(request: web.Request) -> web.StreamResponse:
    if request.method == "GET" and "text/html" in request.headers.get(hdrs.ACCEPT, ""):
        raise web.HTTPSeeOther(f"{PASSWORD_PAGE}?next={quote(request.path_qs, safe='/')}")
    return problem(
        403,
        "choose a new password first: this session signed in with a one-time password",
        password_change=True,
    )


def _is_page(name: str | None) -> bool:
    return (name or "").startswith("page.") or (name or "").endswith(".page")


def _unauthenticated(
    request: web.Request, name: str | None, reason: str | None
) -> web.StreamResponse:
    if _is_page(name) and request.method == "GET":
        raise web.HTTPSeeOther("/login?next=" + quote(request.path, safe="/"))
    challenge = 'Bearer realm="tessera"'
    if reason:
        challenge += f', error="invalid_token", error_description="{reason}"'
    return problem(
        401, reason or "authentication required", headers={"WWW-Authenticate": challenge}
    )


@web.middleware
async def security_middleware(request: web.Request, handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None:  # no route: let aiohttp answer 404 / 405
        return await handler(request)
    name = match.route.name
    if not rule_for(name)[0]:
        return _forbidden("forbidden: this route has no access rule", permission="none")
    limit = body_limit(name)
    if limit is not None:
        if request.content_length is not None and request.content_length > limit:
            return problem(413, f"request body over {limit} bytes")
        # A chunked body declares no length: aiohttp counts the bytes as it reads them.
        # (A clone forgets what an earlier middleware cloned in: carry remote and scheme over.)
        request = request.clone(client_max_size=limit, remote=request.remote, scheme=request.scheme)

    who, refused = await _resolve(request)
    with warnings.catch_warnings():  # the route contract names the key "principal"
        warnings.simplefilter("ignore", NotAppKeyWarning)
        request["principal"] = who
    if who is not None and who.password_temporary and not _while_temporary(name):
        return _choose_first(request)
    decision = decide(name, who.role if who else None, who.scopes if who else None)
    if not decision.allowed:
        if who is None:
            return _unauthenticated(request, name, refused)
        await audit(
            engine_of(request),
            who=who.user,
            role=who.role,
            action="access.denied",
            outcome="denied",
            source=request.remote,
            detail={"route": name, "method": request.method, "reason": decision.reason},
        )
        if _is_page(name) and "text/html" in request.headers.get(hdrs.ACCEPT, ""):
            return forbidden_page(who, decision.permission or "none")
        return _forbidden(f"forbidden: {decision.reason}", permission=decision.permission or "none")
    if who is not None and who.via == "session" and _writes(request) and not _same_origin(request):
        return _forbidden("forbidden: cross-origin request")

    if limit is not None and name not in LONG_RUNNING:
        try:
            async with asyncio.timeout(SMALL_REQUEST_SECONDS):
                return await handler(request)
        except TimeoutError:
            return problem(504, "request took too long")
        except web.HTTPRequestEntityTooLarge:
            return problem(413, f"request body over {limit} bytes")
    if who is None or not (name or "").startswith("dicomweb.read"):
        return await handler(request)
    return await _dicomweb_read(request, handler, who)


async def _dicomweb_read(request: web.Request, handler, who: Principal) -> web.StreamResponse:
    """The access audit of DICOMweb reads. What the caller may see within them is decided by
    the archive, with the scope the door passes (``visibility.request_scope``): an object
    outside it answers 404, as if it did not exist."""
    engine = engine_of(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        await record_read(engine, request, who, exc.status)
        raise
    await record_read(engine, request, who, response.status)
    return response


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: hardening headers on every response, page headers on HTML."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    # The raw header, not response.content_type: aiohttp parses that with the e-mail package
    # (0.2-1 ms) for each Content-Type text it has not seen, e.g. every multipart boundary.
    if headers.get(hdrs.CONTENT_TYPE, "").startswith("text/html"):
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cache-Control", "no-store")
    if request.secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
