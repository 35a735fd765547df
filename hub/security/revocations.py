"""Credential changes, made known at once to every process that uses the same index.

Each process keeps resolved tokens for a few seconds (``accounts.CACHE_SECONDS``). A revoked
token, a disabled user or a new password clears that cache in the process that made the change,
but the others (the reader processes of ``serve --workers``, or the server when the change was
made on the command line) would honour the old credential until their entry expired. With an
SQLite index, eight bytes in a file next to the database are mapped into every process: a change
writes new random bytes there, and each token lookup compares them, one memory read, with what it
saw last and empties its cache when they differ. A PostgreSQL index keeps the few seconds.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

SIZE = 8


class ChangeSignal:
    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        self._seen = self._map[:SIZE]

    def changed(self) -> bool:
        """Whether any process announced a change since this one last looked."""
        now = self._map[:SIZE]
        if now == self._seen:
            return False
        self._seen = now
        return True

    def announce(self) -> None:
        self._map[:SIZE] = os.urandom(SIZE)  # random, so two announcements never look like none


_signals: dict[str, ChangeSignal | None] = {}


def signal_for(engine: AsyncEngine) -> ChangeSignal | None:
    """The engine's signal, opened on first use (a small file: call it off the event loop
    once, as hub.security's start-up does); None for databases that are not SQLite files."""
    key = str(engine.url)
    if key not in _signals:
        _signals[key] = _open(engine)
    return _signals[key]


def _open(engine: AsyncEngine) -> ChangeSignal | None:
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    try:
        return ChangeSignal(Path(f"{url.database}-credentials"))
    except OSError:
        return None
