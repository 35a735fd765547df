"""The audit record of a change a signed-in user made through a route of a package."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine


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
