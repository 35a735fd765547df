"""One process's copy of a configuration scope, read again only when the scope's revision moved.

``current()`` costs one row (the revision) while nothing changed; a scope never filled is seeded
from the settings on the first read. ``parse`` turns the entries (a Snapshot or, inside an edit,
the Draft: both answer ``of(kind)``) into what the package uses; an edit whose result does not
parse is refused, and a stored revision that no longer parses (a setting it relied on is gone)
is logged and the last valid value stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.configstore import entries as store
from hub.configstore.entries import Draft, Entry, Snapshot

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Seed = Mapping[str, list[tuple[str, dict[str, Any]]]]


class Entries(Protocol):
    def of(self, kind: str) -> list[Entry]: ...


@dataclass(frozen=True)
class Change:
    """What one edit did: the entry before (None: created) and after (None: deleted)."""

    kind: str
    name: str
    old: Entry | None
    new: Entry | None

    @staticmethod
    def shown(spec: dict[str, Any]) -> dict[str, Any]:
        """A spec as it may be shown and audited (a subclass redacts its secrets here)."""
        return spec

    def audit_detail(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "old": self.shown(self.old.spec) if self.old else None,
            "new": self.shown(self.new.spec) if self.new else None,
            "version": self.new.version if self.new else None,
        }


class CachedScope(Generic[T]):
    def __init__(
        self,
        engine: AsyncEngine,
        scope: str,
        kinds: Sequence[str],
        *,
        seed: Seed,
        parse: Callable[[Entries], T],
        initial: T,
        invalid: type[Exception] | tuple[type[Exception], ...] = ValueError,
    ) -> None:
        self.engine = engine
        self.scope = scope
        self.kinds = tuple(kinds)
        self.seed = seed
        self.parse = parse
        self.invalid = invalid
        self.value = initial  # until the index is read: what the settings say
        self.snapshot = Snapshot(0, ())
        self._revision: int | None = None

    async def current(self, conn: AsyncConnection | None = None) -> T:
        """The value as the index has it now (within ``conn``'s transaction if given)."""
        if conn is None:
            async with self.engine.begin() as own:
                return await self._refresh(own)
        return await self._refresh(conn)

    async def edit(self, who: str, apply: Callable[[Draft], R]) -> R:
        """Apply one edit in one transaction; it is refused (``invalid``) when the entries it
        leaves do not parse, and whatever ``apply`` raises leaves the scope as it was."""
        await self.current()  # seeds a scope never filled

        def checked(draft: Draft) -> R:
            done = apply(draft)
            self.parse(draft)
            return done

        done, after = await store.change(self.engine, self.scope, self.kinds, who, checked)
        self._adopt(after)
        return done

    async def _refresh(self, conn: AsyncConnection) -> T:
        at = await store.revision(conn, self.scope)
        if at is None:
            await store.seed(conn, self.scope, self.seed)
            at = await store.revision(conn, self.scope)
        if at != self._revision:
            snapshot = await store.read(conn, self.scope, self.kinds)
            assert snapshot is not None
            self._adopt(snapshot)
        return self.value

    def _adopt(self, snapshot: Snapshot) -> None:
        try:
            value = self.parse(snapshot)
        except self.invalid as exc:
            log.error(
                "%s: configuration revision %d is not valid, the last valid one stays: %s",
                self.scope,
                snapshot.revision,
                exc,
            )
            self._revision = snapshot.revision
            return
        if self._revision is not None and snapshot.revision != self._revision:
            log.info("%s: configuration revision %d", self.scope, snapshot.revision)
        self.value, self.snapshot, self._revision = value, snapshot, snapshot.revision
