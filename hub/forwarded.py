"""Where a client reached the hub: what trusted reverse proxies say about the request.

A proxy that terminates TLS or serves the hub under a path (``https://pacs.example.org/hub``)
tells the hub so in ``Forwarded`` (RFC 7239) or ``X-Forwarded-Proto/-Host/-For/-Prefix``.
Those headers are honoured only from the addresses in ``Settings.trusted_proxies``: from
anyone else they are what the client claims and mean nothing. ``Settings.public_url``, when
set, overrides all of this for the absolute URLs the hub writes (``hub.dicomweb``).
"""

from __future__ import annotations

import ipaddress
import re
import warnings

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning

PREFIX_KEY = "forwarded_prefix"  # request key: the path the proxy serves the hub under
X_FORWARDED_PROTO = "X-Forwarded-Proto"
X_FORWARDED_HOST = "X-Forwarded-Host"
X_FORWARDED_FOR = "X-Forwarded-For"
X_FORWARDED_PREFIX = "X-Forwarded-Prefix"
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(values: list[str]) -> list[Network]:
    """Addresses or CIDR blocks; a bad one is an error that names it."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {value!r} is not an address or network") from exc
    return out


def forwarded_middleware(trusted: list[str]):
    """Requests from a trusted proxy take the client's scheme, host, address and path prefix
    from the proxy's headers."""
    proxies = networks(trusted)

    @web.middleware
    async def from_proxy(request: web.Request, handler) -> web.StreamResponse:
        if _peer_in(request, proxies):
            request = as_forwarded(request)
        return await handler(request)

    return from_proxy


def as_forwarded(request: web.Request) -> web.Request:
    """The request as the client sent it to the proxy. Where a proxy chain appended values,
    the last one (added by the proxy that talks to us) counts."""
    element = request.forwarded[-1] if request.forwarded else {}
    proto = (element.get("proto") or _last(request, X_FORWARDED_PROTO)).lower()
    host = element.get("host") or _last(request, X_FORWARDED_HOST)
    remote = element.get("for") or _last(request, X_FORWARDED_FOR)
    changes: dict[str, str] = {}
    if proto in ("http", "https"):
        changes["scheme"] = proto
    if host and _HOST.fullmatch(host):
        changes["host"] = host
    if remote:
        changes["remote"] = remote.strip("[]")
    cloned = request.clone(**changes) if changes else request
    set_prefix(cloned, _last(request, X_FORWARDED_PREFIX))
    return cloned


def set_prefix(request: web.Request, prefix: str) -> None:
    prefix = prefix.rstrip("/")
    if prefix and _PREFIX.fullmatch(prefix) and "//" not in prefix:
        with warnings.catch_warnings():  # a per-request value, not an application key
            warnings.simplefilter("ignore", NotAppKeyWarning)
            request[PREFIX_KEY] = prefix


def prefix_of(request: web.Request) -> str:
    return request.get(PREFIX_KEY, "")


def _last(request: web.Request, header: str) -> str:
    return request.headers.get(header, "").rsplit(",", 1)[-1].strip()


def _peer_in(request: web.Request, proxies: list[Network]) -> bool:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not proxies or not isinstance(peer, tuple):
        return False  # a Unix socket (a reader's relay) is trusted by hub.serve.proxy instead
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    return any(address in network for network in proxies)
