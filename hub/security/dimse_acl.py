"""The DIMSE allow-list: which calling AE titles may use which services (deny by default)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.security.dimse_services import SERVICES
from hub.security.tables import ae_permissions

__all__ = ["SERVICES", "ae_permitted", "allow_ae", "list_ae", "remove_ae"]


def _normalise(ae_title: str) -> str:
    title = ae_title.strip()
    if not 0 < len(title) <= 16 or not title.isascii() or "\\" in title:
        raise ValueError(f"invalid AE title {ae_title!r}")
    return title


async def ae_permitted(engine: AsyncEngine, calling_ae: str, service: str) -> bool:
    """May ``calling_ae`` use ``service`` (store, find, move, get, worklist)?"""
    if service not in SERVICES:
        raise ValueError(f"unknown DIMSE service {service!r} (one of {', '.join(SERVICES)})")
    try:
        title = _normalise(calling_ae)
    except ValueError:
        return False
    async with engine.connect() as conn:
        allowed = await conn.scalar(
            select(ae_permissions.c[service]).where(ae_permissions.c.ae_title == title)
        )
    return bool(allowed)


async def allow_ae(engine: AsyncEngine, ae_title: str, services: list[str], note: str = "") -> None:
    """Set the services an AE may use (replaces what it had)."""
    title = _normalise(ae_title)
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown DIMSE service(s): {', '.join(sorted(unknown))}")
    values = {s: s in services for s in SERVICES} | {"note": note}
    async with engine.begin() as conn:
        await conn.execute(delete(ae_permissions).where(ae_permissions.c.ae_title == title))
        await conn.execute(ae_permissions.insert().values(ae_title=title, **values))


async def remove_ae(engine: AsyncEngine, ae_title: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(ae_permissions).where(ae_permissions.c.ae_title == _normalise(ae_title))
        )
    return result.rowcount > 0


async def list_ae(engine: AsyncEngine) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(ae_permissions).order_by(ae_permissions.c.ae_title))
        return [dict(r._mapping) for r in rows]
