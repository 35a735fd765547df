"""Composition root: settings -> archive -> doors -> one aiohttp Application."""

from __future__ import annotations

import logging

from aiohttp import web

import telehealth.routes as telehealth_routes
import web.routes as web_routes
from hub import annotations, bodyrate, connlimits, dicomweb, errors, jobs, security
from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.archive import Archive
from hub.config import Settings
from hub.dimse import service as dimse_service
from hub.dose import service as dose_service
from hub.forward import service as forward_service
from hub.forwarded import forwarded_middleware
from hub.proxy import trust_local_proxy
from hub.worklist import api as worklist_api

log = logging.getLogger(__name__)


async def build_app(
    settings: Settings, archive: Archive | None = None, *, relayed: bool = False
) -> web.Application:
    """The whole hub as one Application; the archive is opened here unless one is given.

    ``relayed``: reader processes relay requests to this one (``hub.readers``), which then
    takes the client's address and scheme from them.
    """
    owned = archive is None
    archive = archive or await Archive.open(settings)
    app = web.Application(client_max_size=1024**2)
    app[SETTINGS_KEY] = settings
    app[ARCHIVE_KEY] = archive
    errors.install(app)
    connlimits.install(app, settings)
    bodyrate.install(app, settings)
    if settings.trusted_proxies:
        app.middlewares.append(forwarded_middleware(settings.trusted_proxies))
    if relayed:
        app.middlewares.append(trust_local_proxy)
    for setup in _doors():
        setup(app)
    if owned:
        app.on_cleanup.append(close_archive)
    return app


def _doors():
    """Each door adds its routes and background work, in this order. Security comes first so
    that its gate is the outermost middleware."""
    return [
        security.setup,
        dicomweb.setup,
        worklist_api.setup,
        forward_service.setup,
        dimse_service.setup,
        jobs.setup,
        telehealth_routes.setup,
        annotations.setup,
        dose_service.setup,
        web_routes.setup,
    ]


async def close_archive(app: web.Application) -> None:
    await app[ARCHIVE_KEY].close()
