"""``GET /api/conformance``: the node's conformance statement, open to everyone as a vendor's
published statement is. Built once, on first use, from the node's settings."""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from hub.apispec import described
from hub.app_keys import SETTINGS_KEY
from hub.conformance.model import Statement
from hub.conformance.statement import build_statement


class Published:
    """The statement's JSON, made once per process (the settings do not change)."""

    def __init__(self) -> None:
        self.body: bytes | None = None
        self.lock = asyncio.Lock()

    async def get(self, app: web.Application) -> bytes:
        async with self.lock:
            if self.body is None:
                statement = await asyncio.to_thread(build_statement, app[SETTINGS_KEY])
                self.body = msgspec.json.encode(statement)
        return self.body


PUBLISHED_KEY: web.AppKey[Published] = web.AppKey("conformance", Published)


def setup(app: web.Application) -> None:
    app[PUBLISHED_KEY] = Published()
    app.router.add_get("/api/conformance", statement, name="public.conformance.statement")


@described(
    "The DICOM conformance statement: DIMSE services, DICOMweb resources, keys and security",
    returns=Statement,
)
async def statement(request: web.Request) -> web.Response:
    body = await request.app[PUBLISHED_KEY].get(request.app)
    return web.Response(body=body, content_type="application/json")
