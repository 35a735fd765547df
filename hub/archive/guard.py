"""The guard a single-holder duty hands to the code that deletes for it.

Removing what no index row names (the orphan repair, the bucket janitor) is a duty only one node
may do at a time: several nodes removing at once each trust a listing the other is changing, and
a node that lost the duty while it was paused would act on a stale one. The duty is held through
a lease (``hub.serve.leases``); the core only sees this protocol:

- every batch of deletes runs inside ``batch()``, which refuses (raises) when this node no longer
  holds the duty, and keeps a takeover waiting until the batch ends;
- ``check()`` before each delete inside a batch stops a holder whose hold ran out meanwhile (a
  node paused in the middle of a batch).

``UNGUARDED`` is for callers that hold nothing: a lone process, or a test of the deletes alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

T = TypeVar("T")

BATCH = 64  # deletes per guarded batch: a takeover waits for at most one


class Guard(Protocol):
    def batch(self) -> AbstractAsyncContextManager[object]: ...

    def check(self) -> None: ...


class _Unguarded:
    def batch(self) -> AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    def check(self) -> None:
        return None


UNGUARDED: Guard = _Unguarded()


def batches(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
