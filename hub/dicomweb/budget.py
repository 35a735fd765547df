"""How many decoded bytes this process holds at once for WADO-RS answers.

Decoding multiplies a frame's size (a 40 KB JPEG tile is 200 KB of pixels), so every decode
first reserves its estimated size here and gives it back once the bytes are written to the
client. Requests beyond the budget wait their turn instead of growing the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from hub.archive.model import InstanceRef

DECODED_BYTES_AT_ONCE = 128 * 1024**2
UNKNOWN_FRAME_BYTES = 4 * 1024**2  # an instance whose size the index does not know
BYTES_PER_PIXEL = 6  # three samples of 16 bits: the most a WADO-RS decode produces here


def decoded_frame_bytes(ref: InstanceRef) -> int:
    if not ref.rows or not ref.columns:
        return UNKNOWN_FRAME_BYTES
    return ref.rows * ref.columns * BYTES_PER_PIXEL


class ByteBudget:
    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        """Hold ``size`` bytes (a piece larger than the whole budget waits for all of it)."""
        size = min(size, self.total)
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= size)
            self.free -= size
        try:
            yield
        finally:
            async with self._changed:
                self.free += size
                self._changed.notify_all()


_budgets: dict[asyncio.AbstractEventLoop, ByteBudget] = {}


def decode_budget() -> ByteBudget:
    """The budget of the running event loop (one per process in the hub)."""
    loop = asyncio.get_running_loop()
    if loop not in _budgets:
        _budgets.clear()  # a loop of an earlier test run: its waiters are gone
        _budgets[loop] = ByteBudget(DECODED_BYTES_AT_ONCE)
    return _budgets[loop]
