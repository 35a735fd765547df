"""Wiring the security package into the aiohttp application."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.config import SecuritySettings
from hub.security import audit_trail as audit_mod
from hub.security import cors, password_routes, ratelimit, revocations, visibility
from hub.security.accounts import ensure_admin, forget_cached, purge_expired
from hub.security.admin_routes import add_admin_routes
from hub.security.middleware import (
    SECURITY_KEY,
    SecurityState,
    add_security_headers,
    security_middleware,
)
from hub.security.redact import install_log_redaction
from hub.security.routes import add_routes
from hub.tasks import cancel_and_wait

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 3600.0


def setup(
    app: web.Application,
    *,
    engine: AsyncEngine | None = None,
    data_dir: Path | None = None,
    primary: bool = True,
) -> None:
    """Install the access gate, the hardening headers, the login routes and the audit writer.

    Call before any other package's setup so the gate is the outermost middleware. The engine
    and data directory default to the archive's (``app[ARCHIVE_KEY]``, ``app[SETTINGS_KEY]``),
    looked up at start-up, so the archive must be opened by an earlier cleanup context.
    ``primary=False`` (reader processes): no first admin account and no housekeeping, which
    the primary process does once for all.
    """
    settings = app.get(SETTINGS_KEY)
    app[SECURITY_KEY] = SecurityState(
        engine=engine,
        data_dir=data_dir,
        primary=primary,
        settings=settings.security if settings is not None else SecuritySettings(),
    )
    app.middlewares.append(security_middleware)
    app.on_response_prepare.append(add_security_headers)
    cors.setup(app, settings.cors_origins if settings is not None else [])
    add_routes(app)
    password_routes.add_routes(app)
    add_admin_routes(app)
    app.cleanup_ctx.append(_security_context)


async def _security_context(app: web.Application) -> AsyncIterator[None]:
    state = app[SECURITY_KEY]
    archive = app.get(ARCHIVE_KEY)
    if state.engine is None:
        if archive is None:
            raise RuntimeError("hub.security needs app[ARCHIVE_KEY] opened before its start-up")
        state.engine = archive.engine
    if state.data_dir is None:
        state.data_dir = Path(app[SETTINGS_KEY].data_dir)
    if archive is not None:
        archive.resolve_writer_scopes(visibility.writer_scopes(state.engine))
    await asyncio.to_thread(revocations.signal_for, state.engine)  # opens a file: not on the loop
    listener = revocations.listener_for(state.engine, forget_cached)
    listening = (
        None if listener is None else asyncio.create_task(listener.run(), name="credentials")
    )
    install_log_redaction()
    log = audit_mod.attach(state.engine, state.data_dir, state.settings.audit_key)
    await log.start()
    housekeeping = None
    if state.primary:
        if archive is not None:
            archive.subscribe(audit_mod.archive_subscriber(state.engine))
        await _first_admin(state)
        housekeeping = asyncio.create_task(
            _housekeeping(state.engine), name="security-housekeeping"
        )
    try:
        yield
    finally:
        for task in (housekeeping, listening):
            await cancel_and_wait(task)
        await log.close()
        audit_mod.detach(state.engine)


async def _first_admin(state: SecurityState) -> None:
    assert state.engine is not None
    state.generated_admin_password = await ensure_admin(state.engine, state.settings.admin_password)
    if state.generated_admin_password:
        print(
            "Created user 'admin' with one-time password: "
            f"{state.generated_admin_password}\n(the first sign-in chooses a new one)",
            file=sys.stderr,
            flush=True,
        )


async def _housekeeping(engine: AsyncEngine) -> None:
    """Hourly: forget long-expired sessions and tokens, and old login attempts."""
    while True:
        try:
            await purge_expired(engine)
            await ratelimit.purge(engine)
        except Exception:  # noqa: BLE001 - housekeeping must not end the hub
            log.exception("security housekeeping failed")
        await asyncio.sleep(HOUSEKEEPING_SECONDS)
