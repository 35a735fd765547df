"""Login throttling, kept in the database so that every process and node shares it.

Each attempt is counted *before* its password is verified: an atomic compare-and-set on a
counter row claims the attempt, so a burst of concurrent guesses cannot all pass a check that
has not yet seen the others. A successful login gives the claim back.

- **Per account**: the first few failures are free; after that each further attempt must wait
  an exponentially growing delay (1 s, 2 s, 4 s ... at most 15 minutes). There is no hard
  lockout, and failures are forgiven over time (the counter leaks).
- **Per client address**: a leaky bucket that holds many failures (a clinic's whole staff
  sits behind one NAT address and mistypes passwords), then slows that address down.
- **Known places**: an account that signed in successfully from an address recently is
  counted separately there. Failures made elsewhere (a guesser on another network, or a
  sprayer behind the same NAT trying other names) neither delay it nor drain the address's
  bucket for it, so nobody can lock a user out of the place they work from.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.security.tables import login_throttle

KNOWN_PLACE_SECONDS = 30 * 86400
KEEP_SECONDS = 2 * 86400  # counters idle this long are forgotten (they have leaked empty)
CLAIM_TRIES = 8


@dataclass(frozen=True)
class Rule:
    free: int  # failures before any delay
    base_seconds: float  # the first delay; each further failure doubles it
    max_seconds: float
    leak_seconds: float  # one failure is forgiven per this many seconds

    def delay(self, level: float) -> float:
        if level <= self.free:
            return 0.0
        return min(self.max_seconds, self.base_seconds * 2 ** (level - self.free - 1))


ACCOUNT = Rule(free=5, base_seconds=1.0, max_seconds=900.0, leak_seconds=900.0)
ADDRESS = Rule(free=30, base_seconds=1.0, max_seconds=900.0, leak_seconds=60.0)


@dataclass(frozen=True)
class Refusal:
    scope: str  # "user" | "address"
    retry_after: int  # seconds


@dataclass(frozen=True)
class Claim:
    keys: tuple[str, ...]  # the counters this attempt was charged to


def _account_key(username: str) -> str:
    return f"user:{username[:128]}"


def _address_key(address: str) -> str:
    return f"addr:{address[:64]}"


def _place_key(username: str, address: str) -> str:
    return f"place:{username[:128]}@{address[:64]}"


def _known_key(username: str, address: str) -> str:
    return f"known:{username[:128]}@{address[:64]}"


async def claim(engine: AsyncEngine, username: str, address: str) -> Claim | Refusal:
    """Charge one attempt to the counters that apply, or say how long to wait."""
    now = time.time()
    if await _known_place(engine, username, address, now):
        counters = [(_place_key(username, address), ACCOUNT, "user")]
    else:
        counters = [
            (_address_key(address), ADDRESS, "address"),
            (_account_key(username), ACCOUNT, "user"),
        ]
    charged: list[str] = []
    for key, rule, scope in counters:
        wait = await _take(engine, key, rule, now)
        if wait is not None:
            for done in charged:
                await _give_back(engine, done)
            return Refusal(scope, wait)
        charged.append(key)
    return Claim(tuple(charged))


async def succeeded(engine: AsyncEngine, claim: Claim, username: str, address: str) -> None:
    """The password was right: clear the counters charged and remember this place."""
    now = time.time()
    async with engine.begin() as conn:
        await conn.execute(
            update(login_throttle)
            .where(login_throttle.c.key.in_(claim.keys))
            .values(level=0.0, next_at=0.0, updated=now)
        )
    await _upsert(engine, _known_key(username, address), next_at=now + KNOWN_PLACE_SECONDS)


async def _known_place(engine: AsyncEngine, username: str, address: str, now: float) -> bool:
    async with engine.connect() as conn:
        until = await conn.scalar(
            select(login_throttle.c.next_at).where(
                login_throttle.c.key == _known_key(username, address)
            )
        )
    return until is not None and until > now


async def _take(engine: AsyncEngine, key: str, rule: Rule, now: float) -> int | None:
    """Compare-and-set one failure onto ``key``; the seconds to wait if it is still delayed."""
    for _ in range(CLAIM_TRIES):
        async with engine.connect() as conn:
            row = (
                await conn.execute(select(login_throttle).where(login_throttle.c.key == key))
            ).one_or_none()
        if row is None:
            try:
                async with engine.begin() as conn:
                    await conn.execute(
                        login_throttle.insert().values(
                            key=key, level=1.0, next_at=now + rule.delay(1.0), updated=now
                        )
                    )
                return None
            except IntegrityError:
                continue  # created meanwhile by a concurrent attempt: read it again
        if row.next_at > now:
            return max(1, math.ceil(row.next_at - now))
        level = max(0.0, row.level - (now - row.updated) / rule.leak_seconds) + 1.0
        async with engine.begin() as conn:
            result = await conn.execute(
                update(login_throttle)
                .where(
                    login_throttle.c.key == key,
                    login_throttle.c.level == row.level,
                    login_throttle.c.updated == row.updated,
                )
                .values(level=level, next_at=now + rule.delay(level), updated=now)
            )
        if result.rowcount == 1:
            return None
    return 1  # contended by many concurrent attempts: this one waits


async def _give_back(engine: AsyncEngine, key: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(login_throttle)
            .where(login_throttle.c.key == key, login_throttle.c.level >= 1.0)
            .values(level=login_throttle.c.level - 1.0)
        )


async def _upsert(engine: AsyncEngine, key: str, next_at: float) -> None:
    now = time.time()
    for _ in range(CLAIM_TRIES):
        async with engine.begin() as conn:
            result = await conn.execute(
                update(login_throttle)
                .where(login_throttle.c.key == key)
                .values(next_at=next_at, updated=now)
            )
        if result.rowcount:
            return
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    login_throttle.insert().values(key=key, level=0.0, next_at=next_at, updated=now)
                )
            return
        except IntegrityError:
            continue


async def purge(engine: AsyncEngine) -> None:
    """Forget counters idle for two days and places not signed in from for a month."""
    now = time.time()
    async with engine.begin() as conn:
        await conn.execute(
            delete(login_throttle).where(
                login_throttle.c.updated < now - KEEP_SECONDS, login_throttle.c.next_at < now
            )
        )
