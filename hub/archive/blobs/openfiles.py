"""Read-only descriptors kept open across reads, least recently used first, bounded in number.

A descriptor is closed only when no read holds it: closed while another thread was in
``os.pread`` on it, its number could be reused at once by the next ``open`` of another file, and
that read would return the other file's bytes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


@dataclass(slots=True)
class Held:
    fd: int
    touched: float = 0.0  # for the caller's own bookkeeping (the cache refreshes mtimes)
    users: int = 0
    closing: bool = False


class OpenFiles(Generic[Key]):
    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._open: OrderedDict[Key, Held] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def use(self, key: Key, opener: Callable[[Key], int]) -> Iterator[Held]:
        """The open descriptor of ``key`` (``opener(key)`` opens it if it is not), held until the
        block ends. ``opener``'s exceptions (a missing file) pass through."""
        held = self._acquire(key, opener)
        try:
            yield held
        finally:
            self._release(held)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._open

    def forget(self, which: Callable[[Key], bool]) -> None:
        """Close the descriptors of the keys ``which`` selects (once their reads end)."""
        with self._lock:
            for key in [k for k in self._open if which(k)]:
                self._drop(self._open.pop(key))

    def close(self) -> None:
        self.forget(lambda _: True)

    def descriptors(self) -> list[int]:
        with self._lock:
            return [held.fd for held in self._open.values()]

    def _acquire(self, key: Key, opener: Callable[[Key], int]) -> Held:
        with self._lock:
            held = self._open.get(key)
            if held is None:
                held = self._open[key] = Held(opener(key))
                while len(self._open) > self._limit:
                    self._drop(self._open.popitem(last=False)[1])
            else:
                self._open.move_to_end(key)
            held.users += 1
            return held

    def _release(self, held: Held) -> None:
        with self._lock:
            held.users -= 1
            if held.closing and not held.users:
                os.close(held.fd)

    @staticmethod
    def _drop(held: Held) -> None:
        """Close now if unused, else when the last read lets go (called with the lock held)."""
        if held.users:
            held.closing = True
        else:
            os.close(held.fd)
