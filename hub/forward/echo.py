"""Test a forwarding target as the forwarder reaches it: C-ECHO for DIMSE (in a thread:
pynetdicom blocks), a one-study search for STOW-RS."""

from __future__ import annotations

import asyncio

from hub.forward import dimse_sender, stow_sender
from hub.forward.config import DimseTarget, Target, Timeouts


async def echo(target: Target, timeouts: Timeouts) -> tuple[bool, str]:
    """(answered as it should, what happened)."""
    if isinstance(target, DimseTarget):
        return await asyncio.to_thread(dimse_sender.echo, target, timeouts)
    return await stow_sender.probe(target, timeouts)
