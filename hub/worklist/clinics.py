"""Assigning a worklist item to a clinic: the clinic is an account with the clinic role."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.security.tables import users
from hub.worklist.model import WorklistError


async def check_clinic(engine: AsyncEngine, clinic: str) -> None:
    """Refuse an assignment nobody would see: an unknown user, or one that is no clinic."""
    name = clinic.strip()
    if not name:
        return
    async with engine.connect() as conn:
        role = await conn.scalar(select(users.c.role).where(users.c.username == name))
    if role is None:
        raise WorklistError(f"clinic {name!r} is not a user (create it: tessera user add)")
    if role != "clinic":
        raise WorklistError(f"clinic {name!r} is a {role} account, not a clinic")
