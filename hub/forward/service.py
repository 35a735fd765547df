"""Wiring of forwarding into the hub application and into other archive users.

``setup(app)``: queue forwards for everything the app's archive ingests, run the delivery
worker while the app runs, as this node (``hub.serve.registry``), and add the REST API.
``install(archive)``: only queue forwards (for processes such as ``tessera import`` that ingest
without serving; the server's worker delivers them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from weakref import WeakKeyDictionary, ref

from aiohttp import web

from hub.app_keys import ARCHIVE_KEY, NODE_KEY, SETTINGS_KEY
from hub.archive import Archive
from hub.config import Settings
from hub.forward import api, config_api
from hub.forward.configsource import ConfigSource
from hub.forward.keys import FORWARDER_KEY
from hub.forward.worker import Forwarder

# The forwarder of each archive, held weakly both ways: it refers to its archive, whose hooks
# keep it alive.
_installed: WeakKeyDictionary[Archive, ref[Forwarder]] = WeakKeyDictionary()


def setup(app: web.Application) -> None:
    forwarder = install(app[ARCHIVE_KEY], app[SETTINGS_KEY])
    app[FORWARDER_KEY] = forwarder
    app.cleanup_ctx.append(_run_worker)
    api.add_routes(app)
    config_api.add_routes(app)


def install(archive: Archive, settings: Settings | None = None) -> Forwarder:
    """Register the enqueue hook on ``archive`` (once per archive). The targets and rules come
    from the index, which ``settings`` (default: the archive's own) and the data dir's
    forward.toml / forward.json fill on the first start (hub.forward.configsource)."""
    known = _installed.get(archive)
    if known is not None and (forwarder := known()) is not None:
        return forwarder
    settings = settings or archive.settings
    forwarder = Forwarder(archive, ConfigSource(archive.engine, settings), settings.cluster)
    forwarder.install()
    _installed[archive] = ref(forwarder)
    return forwarder


async def _run_worker(app: web.Application) -> AsyncIterator[None]:
    forwarder = app[FORWARDER_KEY]
    await forwarder.start(app[NODE_KEY].node)  # the registry starts first (hub.app)
    yield
    await forwarder.stop()
