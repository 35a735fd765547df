"""The audit record of a change a signed-in user made through a route of a package, a peer
system through a door of its own (an HL7 order from a RIS), or an operator through a
``tessera`` command."""

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
    await _record(engine, principal.user, principal.role, action, request.remote, fields)


async def audit_peer_change(
    engine: AsyncEngine, who: str, role: str, source: str, action: str, **fields: Any
) -> None:
    """Record a change a peer system made; an app without the audit trail (no security
    package) has no trail to write to."""
    from hub.security.audit_trail import attached

    if attached(engine):
        await _record(engine, who, role, action, source, fields)


async def _record(
    engine: AsyncEngine, who: str, role: str, action: str, source: str | None, fields: dict
) -> None:
    from hub.security.audit_trail import audit  # only present with the security package

    await audit(
        engine, who=who, role=role, action=action, outcome="success", source=source, **fields
    )


async def audit_command(
    settings: Settings, engine: AsyncEngine, action: str, **fields: Any
) -> None:
    """Record the change under the login name of the operator who ran the command."""
    from hub.security import audit_trail

    audit_trail.attach(engine, settings.data_dir, settings.security.audit_key)
    await _record(engine, operator(), "operator", action, "cli", fields)


def operator() -> str:
    """Who runs the command, for the audit trail."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no password-file entry
        return "cli"
