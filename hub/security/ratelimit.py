"""Login throttling per user name and per client address, kept in the database.

Failed attempts inside a sliding window are counted; past the limit, further attempts are
refused (HTTP 429) until the window has moved on, even with the right password.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.security.tables import login_attempts

WINDOW_SECONDS = 15 * 60
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
KEEP_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Lockout:
    scope: str  # "user" | "address"
    retry_after: int  # seconds


async def _failures(conn, column, value: str, since: float) -> tuple[int, float | None]:
    row = (
        await conn.execute(
            select(func.count(), func.min(login_attempts.c.at)).where(
                column == value, login_attempts.c.at > since, login_attempts.c.ok.is_(False)
            )
        )
    ).one()
    return row[0], row[1]


async def check(engine: AsyncEngine, username: str, address: str) -> Lockout | None:
    """A lockout if this user or address has failed too often recently."""
    now = time.time()
    since = now - WINDOW_SECONDS
    async with engine.connect() as conn:
        for scope, column, value, limit in (
            ("user", login_attempts.c.username, username, MAX_FAILURES_PER_USER),
            ("address", login_attempts.c.address, address, MAX_FAILURES_PER_ADDRESS),
        ):
            count, oldest = await _failures(conn, column, value, since)
            if count >= limit:
                return Lockout(scope, max(1, int(oldest + WINDOW_SECONDS - now) + 1))
    return None


async def record(engine: AsyncEngine, username: str, address: str, ok: bool) -> None:
    now = time.time()
    async with engine.begin() as conn:
        await conn.execute(
            login_attempts.insert().values(
                username=username[:128], address=address[:64], at=now, ok=ok
            )
        )
        if ok:  # a good login clears this user's failure count
            await conn.execute(
                delete(login_attempts).where(
                    login_attempts.c.username == username, login_attempts.c.ok.is_(False)
                )
            )


async def purge(engine: AsyncEngine) -> None:
    """Forget attempts older than a day (they no longer count towards any lockout)."""
    async with engine.begin() as conn:
        await conn.execute(
            delete(login_attempts).where(login_attempts.c.at < time.time() - KEEP_SECONDS)
        )
