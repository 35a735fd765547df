"""Hand a request from a reader process to the primary process, over a private Unix socket.

Reader processes (``tessera serve --workers N``) answer DICOMweb reads and static files
themselves; every other request (writes, logins, uploads, job progress streams, telehealth
WebSockets) is relayed here to the primary, which holds the single-writer parts of the hub.
The relay streams both ways: a multi-gigabyte STOW body or a server-sent event stream is
never held in memory.

The primary trusts the client address and scheme a reader passes on only for requests that
arrive on that Unix socket (``trust_local_proxy``); on the public port the headers mean nothing.

The same relay, over TCP (``Upstream()`` without a socket, each call given a ``Hop``), takes a
call for a live telehealth session to the node that holds it (telehealth/rooms.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict

from hub.errors import problem
from hub.forwarded import X_FORWARDED_PREFIX, prefix_of, set_prefix

log = logging.getLogger(__name__)

FORWARDED_FOR = "X-Forwarded-For"
FORWARDED_PROTO = "X-Forwarded-Proto"
CHUNK = 256 * 1024
# RFC 9110 section 7.6.1, plus what aiohttp sets itself on each side.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        hdrs.CONNECTION,
        "Keep-Alive",
        hdrs.PROXY_AUTHENTICATE,
        hdrs.PROXY_AUTHORIZATION,
        hdrs.TE,
        hdrs.TRAILER,
        hdrs.TRANSFER_ENCODING,
        hdrs.UPGRADE,
        hdrs.EXPECT,
        FORWARDED_FOR,
        FORWARDED_PROTO,
    )
)
WEBSOCKET_HANDSHAKE = frozenset(
    h.lower()
    for h in (
        hdrs.SEC_WEBSOCKET_KEY,
        hdrs.SEC_WEBSOCKET_VERSION,
        hdrs.SEC_WEBSOCKET_EXTENSIONS,
        hdrs.SEC_WEBSOCKET_PROTOCOL,
        hdrs.SEC_WEBSOCKET_ACCEPT,
    )
)


HOP_HEARTBEAT = 20.0  # seconds, as the hub's own WebSockets
PRIMARY_SILENT = "the hub's main process is not answering; try again shortly"


@dataclass(frozen=True)
class Hop:
    """Another node a request goes to instead: its base URL, headers added to the request, and
    the error its caller gets when it does not answer."""

    base_url: str
    silent: str
    headers: Mapping[str, str] = field(default_factory=dict)


class Upstream:
    """The primary process, reached through its Unix socket; without a socket, other nodes over
    TCP, each relayed call naming its ``Hop``."""

    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None
        self.websockets: set[web.WebSocketResponse] = set()  # relayed now, client side

    async def start(self) -> None:
        if self.socket_path is None:
            connector: aiohttp.BaseConnector = aiohttp.TCPConnector(limit=0)
        else:
            connector = aiohttp.UnixConnector(path=self.socket_path, limit=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the upstream session is not started")
        return self._session

    async def relay(
        self, request: web.Request, hop: Hop | None = None, body: bytes | None = None
    ) -> web.StreamResponse:
        """Relay ``request`` to the primary, or to ``hop``; ``body``: what a handler already read
        of the request's body (else it is streamed)."""
        if _is_websocket(request):
            return await self._relay_websocket(request, hop)
        return await self._relay_http(request, hop, body)

    async def _relay_http(
        self, request: web.Request, hop: Hop | None, body: bytes | None
    ) -> web.StreamResponse:
        headers = _upstream_headers(request, WEBSOCKET_HANDSHAKE, hop)
        try:
            upstream = await self.session.request(
                request.method,
                _upstream_url(request, hop),
                headers=headers,
                data=_body(request) if body is None else body,
                allow_redirects=False,
                skip_auto_headers=(hdrs.USER_AGENT, hdrs.ACCEPT_ENCODING, hdrs.ACCEPT),
            )
        except (aiohttp.ClientConnectionError, OSError) as exc:
            return _unavailable(exc, hop)
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    response.headers.add(name, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _relay_websocket(self, request: web.Request, hop: Hop | None) -> web.StreamResponse:
        headers = _upstream_headers(request, WEBSOCKET_HANDSHAKE, hop)
        protocols = [
            p.strip()
            for p in request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "").split(",")
            if p.strip()
        ]
        try:
            upstream = await self.session.ws_connect(
                _upstream_url(request, hop), headers=headers, protocols=protocols, heartbeat=None
            )
        except aiohttp.WSServerHandshakeError as exc:  # refused upstream: pass it on
            return problem(exc.status, exc.message or "refused")
        except (aiohttp.ClientConnectionError, OSError) as exc:
            return _unavailable(exc, hop)
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (),
            # Another node's pings end at this relay: ping the client, as that node would.
            heartbeat=HOP_HEARTBEAT if hop is not None else None,
        )
        await client.prepare(request)
        self.websockets.add(client)
        pumps = [
            asyncio.create_task(_pump(client, upstream.send_str, upstream.send_bytes)),
            asyncio.create_task(_pump(upstream, client.send_str, client.send_bytes)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for task in pumps:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await upstream.close()
            await client.close()
            self.websockets.discard(client)
        return client


def proxy_middleware(upstream: Upstream, served_here: Callable[[web.Request], bool]):
    """Outermost middleware of a reader: what it does not serve goes to the primary."""

    @web.middleware
    async def relay(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if served_here(request):
            return await handler(request)
        return await upstream.relay(request)

    return relay


@web.middleware
async def trust_local_proxy(request: web.Request, handler) -> web.StreamResponse:
    """On the primary: requests relayed by a reader carry the real client address and scheme."""
    transport = request.transport
    if transport is not None and isinstance(transport.get_extra_info("sockname"), str):
        remote = request.headers.get(FORWARDED_FOR) or request.remote
        scheme = request.headers.get(FORWARDED_PROTO) or request.scheme
        request = request.clone(remote=remote, scheme=scheme)
        set_prefix(request, request.headers.get(X_FORWARDED_PREFIX, ""))
    return await handler(request)


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def _upstream_url(request: web.Request, hop: Hop | None) -> str:
    if hop is not None:
        return f"{hop.base_url}{request.raw_path}"
    # The socket decides where the request goes; the URL's host only fills the Host header.
    return f"http://{request.host}{request.raw_path}"


def _upstream_headers(
    request: web.Request, also_drop: frozenset[str], hop: Hop | None = None
) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in HOP_BY_HOP and name.lower() not in also_drop:
            headers.add(name, value)
    # Set, never appended: what a client claims in these headers is ignored.
    headers[FORWARDED_FOR] = request.remote or ""
    headers[FORWARDED_PROTO] = request.scheme
    headers[X_FORWARDED_PREFIX] = prefix_of(request)
    if hop is None:
        headers[hdrs.HOST] = request.host  # as a trusted proxy gave it (hub.forwarded)
    else:  # the other node's own Host; it trusts none of the forwarding headers on its port
        headers.popall(hdrs.HOST, None)
        headers.update(hop.headers)
    return headers


def _body(request: web.Request):
    if not request.body_exists:
        return None
    return request.content.iter_chunked(CHUNK)


async def _pump(source, send_str, send_bytes) -> None:
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await send_bytes(message.data)
        else:
            break


def _unavailable(exc: BaseException, hop: Hop | None = None) -> web.Response:
    silent = PRIMARY_SILENT if hop is None else hop.silent
    log.warning("%s: %s", silent, exc)
    return problem(503, silent, headers={"Retry-After": "2"})
