"""The signalling WebSocket: one per side of a session.

Protocol (JSON text frames). Client -> hub: ``{"type": "offer", "sdp": ...}`` with a complete
offer (ICE gathering finished; no trickle), ``{"type": "bye"}``. Hub -> client: ``{"type":
"answer", "sdp": ...}``, ``{"type": "state", ...}`` on connect, session events (``peer``,
``capture``, ``freeze``...) and ``{"type": "error", "message": ...}``. A side that reconnects
simply opens a new socket and sends a new offer; the hub replaces its old peer connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from telehealth.session import MessageError, Role, Session

log = logging.getLogger(__name__)
MAX_SIGNAL_BYTES = 256 * 1024
MAX_PENDING_EVENTS = 100  # a socket that stops reading loses events, not memory


async def serve_socket(
    request: web.Request,
    session: Session,
    role: Role,
    actor: str,
    sockets: set,
    may_capture: bool = True,
) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_SIGNAL_BYTES)
    await ws.prepare(request)
    sockets.add(ws)  # closed by the app's shutdown, which would otherwise wait for them
    pending: list[dict[str, Any]] = []
    flushing: set[asyncio.Task] = set()

    def forward(event: dict[str, Any]) -> None:
        if not ws.closed and len(pending) < MAX_PENDING_EVENTS:
            pending.append(event)
            task = asyncio.create_task(_flush(ws, pending))
            flushing.add(task)
            task.add_done_callback(flushing.discard)

    session.listeners.add(forward)
    try:
        await ws.send_json({"type": "state", "role": role, **session.summary()})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            reply = await _handle(session, role, actor, may_capture, msg.data)
            if reply is not None:
                await ws.send_json(reply)
            if reply and reply.get("type") == "bye":
                break
    finally:
        session.listeners.discard(forward)
        sockets.discard(ws)
    return ws


async def close_sockets(sockets: set) -> None:
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"hub shutting down")


async def _flush(ws: web.WebSocketResponse, pending: list[dict[str, Any]]) -> None:
    while pending and not ws.closed:
        await ws.send_json(pending.pop(0))


async def _handle(
    session: Session, role: Role, actor: str, may_capture: bool, text: str
) -> dict[str, Any] | None:
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        return {"type": "error", "message": "signalling messages are JSON"}
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "offer" and isinstance(message.get("sdp"), str):
        try:
            sdp = await session.accept_offer(role, message["sdp"], actor, may_capture)
        except MessageError as exc:
            return {"type": "error", "message": str(exc)}
        except Exception as exc:  # aiortc raises assorted errors for malformed or odd SDP
            log.info("offer from %s refused: %r", role, exc)
            return {"type": "error", "message": f"offer refused: {exc or type(exc).__name__}"}
        return {"type": "answer", "sdp": sdp}
    if kind == "bye":
        await session.leave(role)
        return {"type": "bye"}
    return {"type": "error", "message": "expected {'type': 'offer', 'sdp': ...} or 'bye'"}
