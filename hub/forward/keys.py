"""Application key of the forwarding package."""

from __future__ import annotations

from aiohttp import web

from hub.forward.worker import Forwarder

FORWARDER_KEY: web.AppKey[Forwarder] = web.AppKey("forwarder", Forwarder)
