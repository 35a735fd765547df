"""REST API for the telehealth settings kept in the index (administrators).

GET /api/admin/telehealth   the values, their version, who changed them last; the TURN secret
                            is never shown, only whether one is set
PUT /api/admin/telehealth   change some of them; ``version`` refuses (409) a change made since

Each change is audited with the old and new values (the secret redacted) and applies to the
next session started on any process or node.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

from hub.apispec import described
from hub.audited import audit_change
from hub.configstore.entries import VersionConflict
from hub.errors import problem
from hub.requestdata import json_model
from telehealth.live_settings import LiveSettings, SettingsChange, SettingsRefused


class TelehealthSettingsBody(SettingsChange, forbid_unknown_fields=True, omit_defaults=True):
    """The values to change; those left out keep theirs. An empty turn_secret removes it."""

    version: Annotated[int, Meta(ge=0)] | UnsetType = UNSET


class TelehealthSettingsView(msgspec.Struct):
    stun_urls: list[str]
    turn_urls: list[str]
    turn_secret_set: bool
    turn_credential_seconds: int
    ice_transport_policy: str
    max_sessions: int
    idle_timeout_seconds: float
    max_clip_seconds: float
    jpeg_quality: int
    version: int
    updated_by: str
    updated_at: float


LIVE_KEY: web.AppKey[LiveSettings] = web.AppKey("telehealth.live", LiveSettings)


def add_routes(app: web.Application, live: LiveSettings) -> None:
    app[LIVE_KEY] = live
    app.router.add_get("/api/admin/telehealth", show_settings, name="admin.telehealth.read")
    app.router.add_put("/api/admin/telehealth", save_settings, name="admin.telehealth.save")


@described("The telehealth settings new sessions use", returns=TelehealthSettingsView)
async def show_settings(request: web.Request) -> web.Response:
    live = request.app[LIVE_KEY]
    await live.current()
    return web.json_response(live.describe())


@described(
    "Change telehealth settings; the next session started anywhere uses them",
    body=TelehealthSettingsBody,
    returns=TelehealthSettingsView,
    answers={
        400: "a value is out of range, or the settings would not work together",
        409: "the settings changed since the version given",
    },
)
async def save_settings(request: web.Request) -> web.Response:
    body = await json_model(request, TelehealthSettingsBody)
    values = msgspec.to_builtins(body)
    version = values.pop("version", None)
    live = request.app[LIVE_KEY]
    who = request["principal"].user if request.get("principal") else "api"
    try:
        done = await live.change(who, values, version)
    except VersionConflict as exc:
        return problem(409, str(exc))
    except SettingsRefused as exc:
        return problem(400, str(exc))
    await audit_change(request, live.engine, "admin.telehealth.save", detail=done.audit_detail())
    return web.json_response(live.describe())
