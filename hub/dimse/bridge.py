"""Calling the archive (asyncio) from pynetdicom's association threads."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

T = TypeVar("T")


class ArchiveUnavailable(RuntimeError):
    """The event loop is gone or did not answer in time (DIMSE 0xA700, out of resources)."""


class LoopBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the event loop and wait for it in this (pynetdicom) thread."""
        timeout = timeout or self.timeout
        if self.loop.is_closed():
            coro.close()
            raise ArchiveUnavailable("archive is shutting down")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout as exc:
            future.cancel()
            raise ArchiveUnavailable(f"archive did not answer within {timeout:.0f} s") from exc
