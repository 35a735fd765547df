"""Connection limits of the public HTTP port: how many, from where, and how slow a request head.

aiohttp closes idle keep-alive connections (``keepalive_timeout``, set from
``Settings.http_idle_seconds``) but has no header timeout and no connection caps. This module
adds them below aiohttp, as a protocol wrapped around each of its connections:

- a request head must be complete within ``http_header_seconds`` of its first byte, or the
  connection gets a 408 and is closed (slow-header attacks);
- each process holds at most ``http_connections_total`` connections, and at most
  ``http_connections_per_address`` from one client address. When a limit is reached, an idle
  keep-alive connection (from that address, or any) makes room; if none is idle, the new
  connection is answered 503 and closed.

``GuardedSite`` serves a listening socket through the wrapper; ``install(app, settings)`` adds
the middleware that tells the wrapper when a request is being handled.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from aiohttp import web

from hub.config import Settings
from hub.errors import PROBLEM_JSON, problem_text

log = logging.getLogger(__name__)


def _closing_answer(status: int, detail: str, *headers: str) -> bytes:
    """A whole HTTP answer, written to the socket before it is closed (no aiohttp here)."""
    body = problem_text(status, detail).encode()
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {PROBLEM_JSON}",
        *headers,
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


REFUSED = _closing_answer(503, "too many connections; retry", "Retry-After: 5")
HEAD_TIMEOUT = _closing_answer(408, "the request head came too slowly")


@dataclass(frozen=True)
class Limits:
    header_seconds: float
    per_address: int  # 0: no limit
    total: int  # 0: no limit

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.http_header_seconds,
            settings.http_connections_per_address,
            settings.http_connections_total,
        )


@dataclass(eq=False)
class _Connection:
    address: str
    transport: asyncio.Transport
    busy: int = 0  # requests being handled
    head_timer: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        return not self.busy and self.head_timer is None


@dataclass
class ConnectionGuard:
    """The connections of one process, by address; shared by its sites and its middleware."""

    limits: Limits
    _all: dict[asyncio.BaseTransport, _Connection] = field(default_factory=dict)
    _by_address: dict[str, dict[_Connection, None]] = field(default_factory=dict)

    def protocol_factory(self, make_inner: Callable[[], asyncio.Protocol]):
        return lambda: _GuardedProtocol(self, make_inner)

    def admit(self, transport: asyncio.Transport) -> _Connection | None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer or "")
        same = self._by_address.get(address, {})
        per, total = self.limits.per_address, self.limits.total
        # At a limit, an idle connection (the oldest first) makes room, or the new one waits.
        if per and len(same) >= per and not self._evict_idle(list(same)):
            return None
        if total and len(self._all) >= total and not self._evict_idle(list(self._all.values())):
            return None
        conn = _Connection(address, transport)
        self._all[transport] = conn
        self._by_address.setdefault(address, {})[conn] = None
        return conn

    def forget(self, conn: _Connection) -> None:
        self._stop_head_timer(conn)
        self._all.pop(conn.transport, None)
        same = self._by_address.get(conn.address)
        if same is not None:
            same.pop(conn, None)
            if not same:
                del self._by_address[conn.address]

    def bytes_arrived(self, conn: _Connection) -> None:
        """A request head starts: it must be complete in time (the middleware says when)."""
        if conn.idle:
            loop = asyncio.get_running_loop()
            conn.head_timer = loop.call_later(self.limits.header_seconds, self._too_slow, conn)

    def request_started(self, transport: asyncio.BaseTransport | None) -> _Connection | None:
        conn = self._all.get(transport) if transport is not None else None
        if conn is not None:
            self._stop_head_timer(conn)
            conn.busy += 1
        return conn

    def request_done(self, conn: _Connection) -> None:
        conn.busy -= 1

    def _too_slow(self, conn: _Connection) -> None:
        conn.head_timer = None
        if conn.busy or conn.transport.is_closing():
            return
        log.info("closing a connection from %s: its request head came too slowly", conn.address)
        conn.transport.write(HEAD_TIMEOUT)
        conn.transport.close()

    def _evict_idle(self, candidates: list[_Connection]) -> bool:
        for conn in candidates:
            if conn.idle and not conn.transport.is_closing():
                conn.transport.close()
                self.forget(conn)
                return True
        return False

    @staticmethod
    def _stop_head_timer(conn: _Connection) -> None:
        if conn.head_timer is not None:
            conn.head_timer.cancel()
            conn.head_timer = None


class _GuardedProtocol(asyncio.Protocol):
    """Admits a connection, then hands every event to aiohttp's own protocol."""

    def __init__(self, guard: ConnectionGuard, make_inner: Callable[[], asyncio.Protocol]):
        self._guard = guard
        self._make_inner = make_inner
        self._inner: asyncio.Protocol | None = None
        self._conn: _Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclasses, but have its methods.
        transport = typing.cast(asyncio.Transport, transport)
        self._conn = self._guard.admit(transport)
        if self._conn is None:
            transport.write(REFUSED)
            transport.close()
            return
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None or self._conn is None:
            return
        self._guard.bytes_arrived(self._conn)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._guard.forget(self._conn)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


GUARD_KEY: web.AppKey[ConnectionGuard] = web.AppKey("connection_guard", ConnectionGuard)


def install(app: web.Application, settings: Settings) -> ConnectionGuard:
    """One guard per application (so per process); its middleware marks requests in hand."""
    guard = ConnectionGuard(Limits.of(settings))
    app[GUARD_KEY] = guard

    @web.middleware
    async def track_requests(request: web.Request, handler) -> web.StreamResponse:
        conn = guard.request_started(request.transport)
        try:
            return await handler(request)
        finally:
            if conn is not None:
                guard.request_done(conn)

    app.middlewares.append(track_requests)
    return guard


def runner_options(settings: Settings) -> dict:
    """AppRunner keyword arguments: aiohttp's own idle keep-alive limit."""
    return {"keepalive_timeout": settings.http_idle_seconds}


class GuardedSite(web.BaseSite):
    """Serve a listening socket through the guard (a ``web.SockSite`` with connection limits).

    Sets ``BaseSite._server`` as aiohttp's own sites do, so that ``stop()`` closes it.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        guard: ConnectionGuard,
        *,
        ssl_context=None,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._sock = sock
        self._guard = guard
        host, port = sock.getsockname()[:2]
        self._name = f"{'https' if ssl_context else 'http'}://{host}:{port}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.protocol_factory(server),
            sock=self._sock,
            ssl=self._ssl_context,
            backlog=self._backlog,
            # A TLS handshake is part of the request head's time.
            ssl_handshake_timeout=self._guard.limits.header_seconds if self._ssl_context else None,
        )
