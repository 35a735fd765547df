"""The HL7 door in the app: the MLLP listener runs for the app's lifetime when
``Settings.hl7.port`` is set."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.hl7.listener import Listener


class Hl7Service:
    """What the app holds: the running listener, once started (None if HL7 is off)."""

    listener: Listener | None = None


HL7_KEY: web.AppKey[Hl7Service] = web.AppKey("hl7", Hl7Service)


async def _listen(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    if settings.hl7.port is None:
        yield
        return
    listener = Listener(app[ARCHIVE_KEY].engine, settings.hl7, settings.ae_title)
    await listener.start()
    app[HL7_KEY].listener = listener
    try:
        yield
    finally:
        await listener.stop()
        app[HL7_KEY].listener = None


def setup(app: web.Application) -> None:
    app[HL7_KEY] = Hl7Service()
    app.cleanup_ctx.append(_listen)
