"""``GET /api/openapi.json``: the API's description, built on first use, when every door has
added its routes."""

from __future__ import annotations

import json
from functools import cached_property

from aiohttp import web

from hub.apispec.describe import described
from hub.apispec.document import openapi_document


class Described:
    def __init__(self, app: web.Application) -> None:
        self._app = app

    @cached_property
    def text(self) -> str:
        return json.dumps(openapi_document(self._app), indent=1)


DOCUMENT_KEY: web.AppKey[Described] = web.AppKey("openapi_document", Described)


def setup(app: web.Application) -> None:
    app[DOCUMENT_KEY] = Described(app)
    app.router.add_get("/api/openapi.json", openapi, name="describe.openapi")


@described("The OpenAPI 3.1 document of this API")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=request.app[DOCUMENT_KEY].text, content_type="application/json")
