"""Typed keys for what the composition root puts into the aiohttp Application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from hub.archive import Archive
    from hub.config import Settings
    from hub.serve.registry import NodeRegistry

ARCHIVE_KEY: web.AppKey[Archive] = web.AppKey("archive")
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings")
NODE_KEY: web.AppKey[NodeRegistry] = web.AppKey("node")  # this node in the registry
