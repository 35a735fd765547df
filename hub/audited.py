"""The audit record of a change a signed-in user made through a route of a package, or an
operator through a ``tessera`` command."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import Settings


async def audit_change(
    request: web.Request, engine: AsyncEngine, action: str, **fields: Any
) -> None:
    """Record the change under the request's principal; without one (no security package in
    this app) there is no trail to write to."""
    principal = request.get("principal")
    if principal is None:
        return
    from hub.security.audit_trail import audit  # only present with the security package

    await audit(
        engine,
        who=principal.user,
        role=principal.role,
        action=action,
        outcome="success",
        source=request.remote,
        **fields,
    )


async def audit_command(
    settings: Settings, engine: AsyncEngine, action: str, **fields: Any
) -> None:
    """Record the change under the login name of the operator who ran the command."""
    from hub.security import audit_trail

    audit_trail.attach(engine, settings.data_dir, settings.security.audit_key)
    await audit_trail.audit(
        engine,
        who=operator(),
        role="operator",
        action=action,
        outcome="success",
        source="cli",
        **fields,
    )


def operator() -> str:
    """Who runs the command, for the audit trail."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no password-file entry
        return "cli"
