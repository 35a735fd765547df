"""A minimum rate for request bodies: a client that stalls or trickles an upload gets a 408.

A watcher beside each request that has a body keeps a credit of ``http_body_grace_seconds``.
Time the server spends waiting for the client's bytes uses it up; each byte that arrives earns
``1 / http_body_min_rate`` seconds back, up to the grace again. Time the server itself is
busy (its read buffer full, so the transport paused) is not charged. When the credit runs out,
the body's stream fails with ``BodyTooSlow``: the handler stops (STOW removes its temp files,
a slide chunk keeps what arrived, so the upload resumes from there), the client is answered
408, and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from hub.config import Settings
from hub.errors import problem

log = logging.getLogger(__name__)

LINGER_SECONDS = 5.0  # after a 408, how long the client may take to close its side
LINGER_POLL_SECONDS = 0.05


class BodyTooSlow(Exception):
    """Raised by the body's stream to whatever handler is reading it."""


def too_slow(min_rate: int) -> web.Response:
    reason = f"the request body arrived slower than {min_rate} bytes per second"
    return problem(408, reason)


class _Watch:
    def __init__(self, request: web.Request, min_rate: int, grace: float) -> None:
        self.request, self.min_rate, self.grace = request, min_rate, grace
        self.fired = False
        self._task = asyncio.create_task(self._run(), name="body-rate")

    async def _run(self) -> None:
        content, transport = self.request.content, self.request.transport
        loop = asyncio.get_running_loop()
        tick = min(1.0, self.grace / 4)
        credit, seen, last = self.grace, content.total_bytes, loop.time()
        while not content.is_eof() and transport is not None and not transport.is_closing():
            await asyncio.sleep(tick)
            now = loop.time()
            arrived = content.total_bytes - seen
            seen += arrived
            waiting = transport.is_reading()  # paused: the server is behind, not the client
            credit = min(self.grace, credit + arrived / self.min_rate)
            if waiting:
                credit -= now - last
            last = now
            if credit <= 0:
                self.fired = True
                content.set_exception(BodyTooSlow())
                return

    def stop(self) -> None:
        self._task.cancel()


def install(app: web.Application, settings: Settings) -> None:
    min_rate, grace = settings.http_body_min_rate, settings.http_body_grace_seconds

    @web.middleware
    async def body_rate(request: web.Request, handler) -> web.StreamResponse:
        if not min_rate or not request.body_exists or request.content.is_eof():
            return await handler(request)
        watch = _Watch(request, min_rate, grace)
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
        except Exception:
            if not watch.fired:
                raise  # the handler failed on the stream's error: answered below
        finally:
            watch.stop()
        if watch.fired:
            if response is None or response.status != 408:
                response = too_slow(min_rate)
            log.info("a request body from %s came too slowly", request.remote)
            await _answer_and_close(request, response)
        return response

    app.middlewares.append(body_rate)


async def _answer_and_close(request: web.Request, response: web.StreamResponse) -> None:
    """Send the answer now and close: the rest of the body is never read (aiohttp would
    otherwise keep reading it, at the client's pace, before closing).

    Closing a socket with unread bytes in its receive buffer, or receiving more bytes after
    closing, makes the kernel answer with a reset, and a reset discards the answer the client
    has not read yet. So the answer ends with a half-close (the client reads it to its end),
    then whatever else the client sends is read and dropped until it closes its side, for up
    to ``LINGER_SECONDS``."""
    response.force_close()
    with contextlib.suppress(ConnectionError):
        if not response.prepared:
            await response.prepare(request)
        await response.write_eof()
    protocol, transport = request.protocol, request.transport
    if transport is not None and not transport.is_closing() and transport.can_write_eof():
        protocol.close()  # from now on the protocol drops what arrives
        transport.write_eof()
        transport.resume_reading()
        await _until_closed_by_client(transport)
    protocol.force_close()


async def _until_closed_by_client(transport: asyncio.Transport) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_SECONDS
    # aiohttp tells a handler of no disconnection but through the body it has stopped reading.
    while not transport.is_closing() and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(LINGER_POLL_SECONDS)
