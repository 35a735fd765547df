"""Cross-origin access for viewers served from another origin (OHIF, SLIM, a web page).

Off unless origins are configured (``Settings.cors_origins``). A listed origin may call every
route with credentials (a bearer token or the session cookie); any other origin gets no CORS
headers, so the browser keeps the answers from its pages. ``*`` allows every origin, without
credentials. Preflights are answered here, before the access gate: browsers send them without
credentials.
"""

from __future__ import annotations

from aiohttp import hdrs, web

ANY = "*"
ALLOWED_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
# What DICOMweb and the hub's API clients send: credentials, content negotiation (PS3.18
# 8.4: Accept, Accept-Charset), conditional and ranged reads, and STOW bodies.
ALLOWED_HEADERS = (
    "Authorization, Content-Type, Accept, Accept-Charset, If-None-Match, If-Modified-Since, "
    "Range, Cache-Control, X-Requested-With"
)
EXPOSED_HEADERS = "Content-Type, Warning, ETag, Content-Length, Content-Location"
PREFLIGHT_SECONDS = "600"


class Cors:
    def __init__(self, origins: list[str]) -> None:
        self.origins = frozenset(o.strip().rstrip("/") for o in origins if o.strip())

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    def allowed(self, origin: str | None) -> bool:
        return origin is not None and (ANY in self.origins or origin in self.origins)

    def headers_for(self, origin: str) -> dict[str, str]:
        if origin in self.origins:  # listed by name: may send credentials
            return {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
            }
        return {"Access-Control-Allow-Origin": ANY}

    @web.middleware
    async def preflight(self, request: web.Request, handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        asked = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
        if request.method != hdrs.METH_OPTIONS or asked is None or not self.allowed(origin):
            return await handler(request)
        assert origin is not None
        return web.Response(
            status=204,
            headers={
                **self.headers_for(origin),
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_SECONDS,
            },
        )

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """on_response_prepare: CORS headers on every answer to an allowed origin."""
        _vary_on_origin(response)
        origin = request.headers.get(hdrs.ORIGIN)
        if not self.allowed(origin) or "Access-Control-Allow-Methods" in response.headers:
            return  # not allowed, or a preflight answer that already has them
        assert origin is not None
        response.headers.update(self.headers_for(origin))
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS


def _vary_on_origin(response: web.StreamResponse) -> None:
    """Answers differ by Origin, so shared caches must key on it."""
    present = response.headers.get(hdrs.VARY, "")
    if "origin" not in present.lower():
        response.headers[hdrs.VARY] = f"{present}, Origin" if present else "Origin"


def setup(app: web.Application, origins: list[str]) -> None:
    """Answer preflights ahead of every other middleware (the access gate and a reader's relay
    included) and decorate every response. Nothing is installed when no origin is listed."""
    cors = Cors(origins)
    if not cors.enabled:
        return
    app.middlewares.insert(0, cors.preflight)
    app.on_response_prepare.append(cors.on_prepare)
