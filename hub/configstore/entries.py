"""Read and change the entries of a configuration scope.

A scope exists once it has been seeded (from the settings, on the first start). A change runs in
one transaction that first bumps the scope's revision, which serialises changes on SQLite and
PostgreSQL alike; the caller's ``apply`` then edits a draft of the entries and may refuse it, in
which case nothing is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.configstore.tables import config_entries, config_scopes

T = TypeVar("T")


class VersionConflict(Exception):
    """The entry changed (or appeared, or went) since the caller read it."""


class NotSeeded(Exception):
    """The scope has never been filled from the settings."""


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    spec: dict[str, Any]
    position: int = 0
    version: int = 1
    updated_at: float = 0.0
    updated_by: str = ""


@dataclass(frozen=True)
class Snapshot:
    revision: int
    entries: tuple[Entry, ...]

    def of(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]


@dataclass
class Draft:
    """A scope's entries inside a change: ``put`` and ``delete`` check the version the caller
    read (None: whatever it is now; 0: the entry must not exist yet)."""

    current: dict[tuple[str, str], Entry]
    who: str
    now: float
    changed: dict[tuple[str, str], Entry | None] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> Entry | None:
        return self.current.get((kind, name))

    def of(self, kind: str) -> list[Entry]:
        found = [e for (k, _), e in self.current.items() if k == kind]
        return sorted(found, key=lambda e: (e.position, e.name))

    def put(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any],
        version: int | None = None,
        position: int | None = None,
    ) -> tuple[Entry | None, Entry]:
        old = self.get(kind, name)
        self._check(old, version, kind, name)
        if position is None:
            position = (
                old.position if old else 1 + max((e.position for e in self.of(kind)), default=0)
            )
        new = Entry(kind, name, spec, position, (old.version + 1) if old else 1, self.now, self.who)
        self._set(new)
        return old, new

    def delete(self, kind: str, name: str, version: int | None = None) -> Entry:
        old = self.get(kind, name)
        if old is None:
            raise KeyError(name)
        self._check(old, version, kind, name)
        del self.current[(kind, name)]
        self.changed[(kind, name)] = None
        return old

    def _set(self, entry: Entry) -> None:
        self.current[(entry.kind, entry.name)] = entry
        self.changed[(entry.kind, entry.name)] = entry

    @staticmethod
    def _check(old: Entry | None, version: int | None, kind: str, name: str) -> None:
        check_version(old.version if old else None, version, f"{kind} {name!r}")


def check_version(found: int | None, wanted: int | None, what: str) -> None:
    """VersionConflict unless the entry is at ``wanted`` (None: any; 0: it must not exist)."""
    if wanted is None or wanted == (found or 0):
        return
    state = f"is at version {found}" if found else "does not exist"
    raise VersionConflict(f"{what} {state}, not {wanted}: reload and retry")


async def revision(conn: AsyncConnection, scope: str) -> int | None:
    row = await conn.execute(select(config_scopes.c.revision).where(config_scopes.c.scope == scope))
    return row.scalar_one_or_none()


async def read(conn: AsyncConnection, scope: str, kinds: Iterable[str]) -> Snapshot | None:
    at = await revision(conn, scope)
    if at is None:
        return None
    rows = await conn.execute(
        select(config_entries)
        .where(config_entries.c.kind.in_(list(kinds)))
        .order_by(config_entries.c.kind, config_entries.c.position, config_entries.c.name)
    )
    return Snapshot(at, tuple(_entry(row) for row in rows.mappings()))


async def seed(
    conn: AsyncConnection, scope: str, entries: Mapping[str, list[tuple[str, dict[str, Any]]]]
) -> bool:
    """Fill a scope that was never filled, with ``{kind: [(name, spec), ...]}``; False (and
    nothing written) when it already was, by this process or another one."""
    now = time.time()
    row = {"scope": scope, "revision": 1, "seeded_at": now, "updated_at": now}
    dialect = conn.dialect.name
    make_insert = pg_insert if dialect == "postgresql" else sqlite_insert
    added = await conn.execute(make_insert(config_scopes).values(**row).on_conflict_do_nothing())
    if added.rowcount != 1:
        return False
    values = [
        _row(Entry(kind, name, spec, position, 1, now, "settings"))
        for kind, named in entries.items()
        for position, (name, spec) in enumerate(named, start=1)
    ]
    if values:
        await conn.execute(insert(config_entries), values)
    return True


async def change(
    engine: AsyncEngine, scope: str, kinds: Iterable[str], who: str, apply: Callable[[Draft], T]
) -> tuple[T, Snapshot]:
    """Run ``apply`` on a draft of the scope and write what it changed, in one transaction;
    whatever ``apply`` raises leaves the scope as it was."""
    kinds = list(kinds)
    async with engine.begin() as conn:
        now = time.time()
        bumped = await conn.execute(
            update(config_scopes)
            .where(config_scopes.c.scope == scope)
            .values(revision=config_scopes.c.revision + 1, updated_at=now)
        )
        if bumped.rowcount != 1:
            raise NotSeeded(scope)
        before = await read(conn, scope, kinds)
        assert before is not None
        draft = Draft({(e.kind, e.name): e for e in before.entries}, who, now)
        result = apply(draft)
        for (kind, name), entry in draft.changed.items():
            await conn.execute(
                delete(config_entries).where(
                    config_entries.c.kind == kind, config_entries.c.name == name
                )
            )
            if entry is not None:
                await conn.execute(insert(config_entries).values(**_row(entry)))
    kept = sorted(draft.current.values(), key=lambda e: (e.kind, e.position, e.name))
    return result, Snapshot(before.revision, tuple(kept))


def _entry(row: Mapping[str, Any]) -> Entry:
    return Entry(
        kind=row["kind"],
        name=row["name"],
        spec=json.loads(row["spec"]),
        position=row["position"],
        version=row["version"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


def _row(entry: Entry) -> dict[str, Any]:
    return {
        "kind": entry.kind,
        "name": entry.name,
        "position": entry.position,
        "spec": json.dumps(entry.spec, sort_keys=True),
        "version": entry.version,
        "updated_at": entry.updated_at,
        "updated_by": entry.updated_by,
    }
