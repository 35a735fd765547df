"""Which stored objects a caller may read: a small value every read, query and ingest call
takes. The security package builds it from a principal; the core applies it, so a door cannot
forget a limit by forgetting to filter its answer.

An object belongs to whoever stored it (``instances.actor``). A scope admits all objects, the
caller's own, those of one modality, or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from sqlalchemy import ColumnElement, false

from hub.archive.index import instances, series

ScopeKind = Literal["all", "own", "modality", "none"]


@dataclass(frozen=True)
class ReadScope:
    kind: ScopeKind
    value: str = ""  # the owner for "own", the modality for "modality"

    ALL: ClassVar[ReadScope]
    NOTHING: ClassVar[ReadScope]

    @classmethod
    def own(cls, actor: str) -> ReadScope:
        return cls("own", actor)

    @classmethod
    def modality(cls, modality: str) -> ReadScope:
        return cls("modality", modality)

    @property
    def everything(self) -> bool:
        return self.kind == "all"

    @property
    def owner(self) -> str | None:
        """Whose objects these are: the namespace of patients stored under this scope."""
        return self.value if self.kind == "own" else None

    def condition(
        self, instance_table: Any = instances, series_table: Any = series
    ) -> ColumnElement[bool] | None:
        """A condition over the instances/series join (or aliases of those tables); None when
        nothing is hidden."""
        if self.kind == "all":
            return None
        if self.kind == "own":
            return instance_table.c.actor == self.value
        if self.kind == "modality":
            return series_table.c.modality == self.value
        return false()

    def admits(self, actor: str | None, modality: str) -> bool:
        """The same rule as ``condition`` for one object already at hand."""
        if self.kind == "all":
            return True
        if self.kind == "own":
            return actor == self.value
        if self.kind == "modality":
            return modality == self.value
        return False


ReadScope.ALL = ReadScope("all")
ReadScope.NOTHING = ReadScope("none")
