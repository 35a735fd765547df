"""OHIF Viewer (the built ``@ohif/app`` from web/node_modules) served beside the hub.

A small aiohttp front serves OHIF's ``dist`` with an ``app-config.js`` that points its
DICOMweb data source at the hub. Same origin: the front also relays ``/dicomweb`` to the hub,
as an integrator's reverse proxy would. Other origin: OHIF calls the hub directly, which must
allow the front's origin by CORS. Either way OHIF sends a bearer token, set through OHIF's
user authentication service by an extension declared in the app config.

``@ohif/app`` is a dev dependency for its built ``dist`` alone, which is self-contained: the
``overrides`` in web/package.json stand an empty package in for each of its own dependencies
(sources' build inputs, some not published at the versions it names).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from hubtest import free_port

OHIF_DIST = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "@ohif" / "app" / "dist"
# Hop-by-hop and length headers the relay must not copy (RFC 9110 7.6.1); aiohttp sets its own.
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    "host",
}

APP_CONFIG = """
window.config = {
  routerBasename: '/',
  extensions: [
    {
      id: 'tessera-bearer',
      preRegistration({ servicesManager }) {
        servicesManager.services.userAuthenticationService.setServiceImplementation({
          getAuthorizationHeader: () => ({ Authorization: %(authorization)s }),
        });
      },
    },
  ],
  modes: [],
  showStudyList: true,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  maxNumberOfWebWorkers: 2,
  investigationalUseDialog: { option: 'never' },
  defaultDataSourceName: 'tessera',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'tessera',
      configuration: {
        friendlyName: 'Tessera',
        name: 'tessera',
        wadoUriRoot: %(root)s,
        qidoRoot: %(root)s,
        wadoRoot: %(root)s,
        qidoSupportsIncludeField: true,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"""


def app_config(dicomweb_root: str, authorization: str) -> str:
    return APP_CONFIG % {
        "root": json.dumps(dicomweb_root),
        "authorization": json.dumps(authorization),
    }


@dataclass
class Front:
    url: str  # the origin OHIF is served from
    dicomweb: str  # the DICOMweb root OHIF was configured with


def _front_app(config: str, hub_url: str | None) -> web.Application:
    """OHIF's files, its single-page routes, the config, and (given a hub) the relay."""
    app = web.Application()

    async def config_js(_: web.Request) -> web.Response:
        return web.Response(text=config, content_type="application/javascript")

    async def page_or_file(request: web.Request) -> web.FileResponse:
        relative = request.match_info["path"]
        target = (OHIF_DIST / relative).resolve()
        if relative and target.is_relative_to(OHIF_DIST) and target.is_file():
            return web.FileResponse(target)
        return web.FileResponse(OHIF_DIST / "index.html")  # OHIF's client-side routes

    app.router.add_get("/app-config.js", config_js)
    if hub_url is not None:
        app.cleanup_ctx.append(_client_session)
        app.router.add_route("*", "/dicomweb/{tail:.*}", _relay_to(hub_url))
    app.router.add_get("/{path:.*}", page_or_file)
    return app


SESSION = web.AppKey("relay_session", aiohttp.ClientSession)


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    app[SESSION] = aiohttp.ClientSession(auto_decompress=False)
    yield
    await app[SESSION].close()


def _relay_to(hub_url: str):
    async def relay(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with request.app[SESSION].request(
            request.method,
            hub_url + request.rel_url.path_qs,
            headers=headers,
            data=await request.read() if request.can_read_body else None,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_HEADERS:
                    response.headers.add(key, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(1 << 16):
                await response.write(chunk)
            await response.write_eof()
            return response

    return relay


@contextlib.asynccontextmanager
async def serve_ohif(
    hub_url: str, authorization: str, *, same_origin: bool, port: int | None = None
) -> AsyncIterator[Front]:
    """OHIF on 127.0.0.1 (a free port unless given) until the block ends."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    root = (url if same_origin else hub_url) + "/dicomweb"
    app = _front_app(app_config(root, authorization), hub_url if same_origin else None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Front(url, root)
    finally:
        await runner.cleanup()
