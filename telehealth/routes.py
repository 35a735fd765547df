"""HTTP routes of the telehealth door: sessions, invites, signalling, captures and pages.

Route names follow ``telehealth.<start|join|signal|capture>.*``; the security policy checks
who may call them. Inside a session, the side is identified by the session token returned when
the session was started (clinic) or joined (specialist), sent as ``X-Telehealth-Token`` or as
``?token=`` on the WebSocket.

Nodes sharing one index: a call for a session another node holds is relayed to that node, the
signalling WebSocket included (``rooms.py``); one whose node stopped gets 410 saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from hub.apispec import described
from hub.app_keys import ARCHIVE_KEY, NODE_KEY, SETTINGS_KEY
from hub.audited import audit_change
from hub.errors import Problem, problem
from hub.requestdata import json_body
from telehealth import settings_api
from telehealth.capture import CaptureError
from telehealth.ice import ice_servers, use_host_candidates
from telehealth.registry import SessionRegistry, TooManySessions
from telehealth.rooms import JOIN, RELAYED_BY, ROOM, Rooms, RoomsUnavailable, kept
from telehealth.session import MessageError, Role, Session, capture_command
from telehealth.signaling import close_sockets, serve_socket
from telehealth.source_capture import SourceCaptureError
from telehealth.us_image import Calibration
from telehealth.worklist import WorklistError, attributes_for_item, inline_image_attributes

REGISTRY_KEY: web.AppKey[SessionRegistry] = web.AppKey("telehealth", SessionRegistry)
STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static" / "telehealth"
PAGES = {"clinic": "clinic.html", "specialist": "specialist.html"}
MAX_BODY = 64 * 1024
MAX_SOURCE_STILL = 64 * 1024 * 1024  # a PNG of the largest allowed frame, with room
CAPTURE_ID = re.compile(r"[A-Za-z0-9-]{8,64}")  # the page's id for one device capture
UNKNOWN_SESSION = "no such telehealth session"
SESSION_ANSWERS = {403: "a valid session token is required", 404: UNKNOWN_SESSION}
UNKNOWN_CODE = "unknown or expired invite code"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    settings = app[SETTINGS_KEY].telehealth
    use_host_candidates(settings.ice_candidates)
    app[REGISTRY_KEY] = SessionRegistry(app[ARCHIVE_KEY], settings)
    settings_api.add_routes(app, app[REGISTRY_KEY].live)
    app.cleanup_ctx.append(_registry_lifetime)
    app.on_shutdown.append(_close_sockets)
    r = app.router
    r.add_post("/api/telehealth/sessions", start_session, name="telehealth.start.create")
    r.add_get("/api/telehealth/sessions/{id}", session_status, name="telehealth.signal.status")
    r.add_delete("/api/telehealth/sessions/{id}", end_session, name="telehealth.start.delete")
    r.add_post("/api/telehealth/join", join_session, name="telehealth.join.create")
    r.add_get("/api/telehealth/sessions/{id}/signal", signal, name="telehealth.signal.ws")
    r.add_get("/api/telehealth/sessions/{id}/ice", ice_config, name="telehealth.signal.ice")
    r.add_post("/api/telehealth/sessions/{id}/captures", capture, name="telehealth.capture.create")
    r.add_get(
        "/api/telehealth/sessions/{id}/captures", list_captures, name="telehealth.capture.read"
    )
    r.add_post(
        "/api/telehealth/sessions/{id}/captures/source",
        source_still,
        name="telehealth.capture.source",
    )
    r.add_get("/telehealth/clinic", _page("clinic"), name="page.telehealth.clinic")
    r.add_get("/telehealth/specialist", _page("specialist"), name="page.telehealth.specialist")


async def _registry_lifetime(app: web.Application) -> AsyncIterator[None]:
    registry = app[REGISTRY_KEY]
    async with contextlib.AsyncExitStack() as stack:
        if (rooms := _shared_rooms(app)) is not None:
            registry.rooms = await stack.enter_async_context(kept(rooms))
        reaper = asyncio.create_task(registry.reap_idle())
        yield
        reaper.cancel()
        await registry.close()  # stores running clips before the archive closes
        registry.rooms = None


def _shared_rooms(app: web.Application) -> Rooms | None:
    """Sessions recorded in the index when other nodes may share it (PostgreSQL); on SQLite
    the index, and so every session, is this node's."""
    engine = app[ARCHIVE_KEY].engine
    node = app.get(NODE_KEY)
    if node is None or engine.dialect.name != "postgresql":
        return None
    return Rooms(engine, node.node, app[SETTINGS_KEY].cluster)


async def _close_sockets(app: web.Application) -> None:
    registry = app[REGISTRY_KEY]
    relayed = registry.rooms.relay_to.websockets if registry.rooms is not None else set()
    await close_sockets(registry.sockets | relayed)


# --- relaying to the node that holds a session ------------------------------------------


def _here_or_holder(handler: Handler) -> Handler:
    """A session call is answered here for a session of this node, else by its holder."""

    @functools.wraps(handler)
    async def answered(request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["id"]
        if request.app[REGISTRY_KEY].get(session_id) is not None:
            return await handler(request)
        return await _elsewhere(request, ROOM + session_id, UNKNOWN_SESSION)

    return answered


async def _elsewhere(
    request: web.Request, lease: str, unknown: str, body: bytes | None = None
) -> web.StreamResponse:
    """The call relayed to the node that holds the session (``body``: what was read of the
    request already), or the reason it cannot be."""
    rooms = request.app[REGISTRY_KEY].rooms
    if rooms is None or RELAYED_BY in request.headers:
        raise Problem(404, unknown)
    try:
        holder = await rooms.find(lease)
    except (SQLAlchemyError, OSError):
        raise Problem(503, "the shared index is not answering") from None
    if holder is None:
        raise Problem(404, unknown)
    if holder.url is None:
        raise Problem(
            410,
            f"the hub node that held this session ({holder.node}) stopped, and the session "
            "ended with it; start a new session",
        )
    return await rooms.relay(request, holder, body)


# --- handlers --------------------------------------------------------------------------------


@described(
    "Start a guidance session, from a worklist item or typed-in patient details",
    status=201,
    answers={503: "too many sessions, or the session registry is not answering"},
)
async def start_session(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        if item_id := body.get("worklist_item"):
            engine = request.app[ARCHIVE_KEY].engine
            attributes = await attributes_for_item(engine, item_id, _worklist_limit(request))
        else:
            attributes = inline_image_attributes(body)
        calibration = body.get("calibration") and Calibration.from_json(body["calibration"])
    except (WorklistError, ValueError) as exc:
        raise Problem(400, str(exc)) from None
    try:
        owner = _owner(request)
        session = await request.app[REGISTRY_KEY].create(attributes, calibration, owner)
    except (TooManySessions, RoomsUnavailable) as exc:
        raise Problem(503, str(exc)) from None
    await _audit(request, "telehealth.start", session)
    invite = f"/telehealth/specialist?code={session.invite_code}"
    return web.json_response(
        {
            **session.summary(),
            "invite_code": session.invite_code,
            "invite_url": str(request.url.origin()) + invite,
            "clinic_token": session.tokens["clinic"],
            "clinic_url": f"/telehealth/clinic?session={session.id}",
        },
        status=201,
    )


def _worklist_limit(request: web.Request):
    """The caller's worklist limit: a clinic starts sessions from its own items only."""
    who = request.get("principal")
    if who is None:
        return None
    from hub.security.visibility import worklist_restriction

    return worklist_restriction(who)


@described(
    "Join a session as the specialist, with its invite code", answers={404: "no such invite code"}
)
async def join_session(request: web.Request) -> web.Response:
    body = await _json_body(request)
    code = body.get("code")
    if not isinstance(code, str):
        raise Problem(404, UNKNOWN_CODE)
    session = request.app[REGISTRY_KEY].by_code(code)
    if session is None:
        return await _elsewhere(request, JOIN + code, UNKNOWN_CODE, await request.read())
    await _audit(request, "telehealth.join", session)
    token = session.tokens["specialist"]
    return web.json_response({**session.summary(), "specialist_token": token})


@described("A session's state", answers=SESSION_ANSWERS)
@_here_or_holder
async def session_status(request: web.Request) -> web.Response:
    session, _ = _session_and_role(request)
    return web.json_response(session.summary())


@described("End a session (the clinic only)", answers=SESSION_ANSWERS)
@_here_or_holder
async def end_session(request: web.Request) -> web.Response:
    session, role = _session_and_role(request)
    if role != "clinic":
        raise Problem(403, "only the clinic ends a session")
    await request.app[REGISTRY_KEY].end(session)
    await _audit(request, "telehealth.end", session, {"captures": len(session.captures)})
    return web.json_response({"id": session.id, "state": "ended", "captures": session.captures})


@described("STUN/TURN servers for this side's next connection", answers=SESSION_ANSWERS)
@_here_or_holder
async def ice_config(request: web.Request) -> web.Response:
    """The STUN/TURN servers for this side's next connection, with TURN credentials minted now
    for this session and side only (the page asks again at every reconnect)."""
    session, role = _session_and_role(request)
    settings = session.settings
    body = {
        "iceServers": ice_servers(settings, f"{session.id}.{role}"),
        "iceTransportPolicy": settings.ice_transport_policy,
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


@described(
    "The session's signalling WebSocket (offer, answer, events)",
    status=101,
    produces="application/octet-stream",
    query={"token": "the side's session token"},
    answers=SESSION_ANSWERS,
)
@_here_or_holder
async def signal(request: web.Request) -> web.StreamResponse:
    session, role = _session_and_role(request)
    registry = request.app[REGISTRY_KEY]
    principal = request.get("principal")
    # Data-channel captures are checked like the capture route (telehealth.capture).
    may_capture = principal is None or principal.has("telehealth.capture")
    actor = _actor(request, role)
    return await serve_socket(request, session, role, actor, registry.sockets, may_capture)


@described(
    "Capture a still or a clip from the live stream and store it as DICOM",
    status=201,
    answers={**SESSION_ANSWERS, 409: "the capture cannot be taken now"},
)
@_here_or_holder
async def capture(request: web.Request) -> web.Response:
    session, role = _session_and_role(request)
    body = await _json_body(request)
    try:
        command = capture_command(body)
        result = await session.command(role, command, _actor(request, role))
    except (MessageError, CaptureError) as exc:
        raise Problem(409, str(exc)) from None
    if result.get("state") == "failed":
        return _not_stored(result)
    return web.json_response(result, status=201 if result.get("state") == "stored" else 200)


@described(
    "Store a still the clinic recorded from the device's own video (PNG, native size)",
    status=201,
    query={"capture": "the capture this still completes"},
    answers={**SESSION_ANSWERS, 415: "not image/png"},
)
@_here_or_holder
async def source_still(request: web.Request) -> web.Response:
    """A still the clinic page recorded from the device's own video (PNG, native size)."""
    session, role = _session_and_role(request)
    if role != "clinic":
        raise Problem(403, "source stills come from the clinic's device")
    if request.content_type != "image/png":
        raise Problem(415, "send the still as image/png")
    capture_id = request.query.get("capture")
    if capture_id is not None and not CAPTURE_ID.fullmatch(capture_id):
        raise Problem(400, "capture must be 8..64 letters, digits or dashes")
    png = await _bounded_body(request, MAX_SOURCE_STILL)
    try:
        result, new = await session.store_source_still(png, _actor(request, role), capture_id)
    except SourceCaptureError as exc:
        raise Problem(400, str(exc)) from None
    if result.get("state") != "stored":
        return _not_stored(result)
    return web.json_response(result, status=201 if new else 200)


@described("The captures stored in this session", answers=SESSION_ANSWERS)
@_here_or_holder
async def list_captures(request: web.Request) -> web.Response:
    session, _ = _session_and_role(request)
    return web.json_response(session.captures)


def _page(name: str):
    # The pages' scripts and styles are served by the web package under /static/telehealth/.
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / PAGES[name], headers={"Cache-Control": "no-cache"})

    return page


# --- helpers ---------------------------------------------------------------------------------


def _session_and_role(request: web.Request) -> tuple[Session, Role]:
    session = request.app[REGISTRY_KEY].get(request.match_info["id"])
    if session is None:  # ended since _here_or_holder found it
        raise Problem(404, UNKNOWN_SESSION)
    token = request.headers.get("X-Telehealth-Token") or request.query.get("token")
    role = session.role_for(token)
    if role is None:
        raise Problem(403, "a valid session token is required")
    return session, role


async def _audit(
    request: web.Request, action: str, session: Session, detail: dict | None = None
) -> None:
    """Record who started, joined or ended a session."""
    await audit_change(
        request,
        request.app[ARCHIVE_KEY].engine,
        action,
        patient=session.attributes.get("PatientID") or None,
        study=session.attributes.get("StudyInstanceUID") or None,
        detail={"session": session.id, **(detail or {})},
    )


def _owner(request: web.Request) -> str | None:
    """The caller's identity, as every door records it (None without the security package)."""
    from hub.security import actor_of  # only present with the security package

    return actor_of(request.get("principal"))


def _actor(request: web.Request, role: Role) -> str:
    """Who acts in a session: the caller's identity (its session role without accounts)."""
    return _owner(request) or role


async def _bounded_body(request: web.Request, limit: int) -> bytes:
    """The whole body, up to ``limit`` bytes (above the app's 1 MiB default for JSON)."""
    if request.content_length and request.content_length > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length and request.content_length > MAX_BODY:
        raise _too_large(MAX_BODY)
    if not request.can_read_body:
        return {}
    body = await json_body(request)
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object")
    return body


def _not_stored(event: dict[str, Any]) -> web.Response:
    """A capture that could not be stored: a 500 problem document carrying the capture event
    (its state and details; the event's own ``type`` gives way to the problem's)."""
    return problem(500, event.get("message") or "the capture was not stored", **event)


def _too_large(limit: int) -> Problem:
    return Problem(413, f"request body over {limit} bytes")
