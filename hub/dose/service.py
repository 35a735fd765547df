"""Wiring of the dose registry: its ingest hook on the archive, its routes on the app."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from aiohttp import web

from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.archive import Archive
from hub.config import Settings
from hub.dose import routes
from hub.dose.profile import Profiles
from hub.dose.registry import DoseRegistry

_installed: WeakKeyDictionary[Archive, DoseRegistry] = WeakKeyDictionary()


def install(archive: Archive, settings: Settings | None = None) -> DoseRegistry:
    """Record the dose reports ingested into ``archive`` from now on (once per archive)."""
    if (registry := _installed.get(archive)) is None:
        registry = DoseRegistry(archive.store, (settings or archive.settings).dose)
        archive.add_indexed_hook(registry.on_indexed)
        _installed[archive] = registry
    return registry


def setup(app: web.Application) -> None:
    registry = install(app[ARCHIVE_KEY], app[SETTINGS_KEY])
    app[routes.PROFILES_KEY] = Profiles(app[ARCHIVE_KEY].engine, registry.table, registry.settings)
    routes.add_routes(app)
