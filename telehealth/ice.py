"""ICE configuration for the hub's peer connections.

aioice gathers host candidates from ``aioice.ice.get_host_addresses`` and always leaves out
127.0.0.1; it has no option to change that list. A hub reachable only on loopback (tests, a
single-machine demo, a sandbox with no other interface) would offer zero candidates and never
connect. The only way in is to replace that module-level function, so ``use_host_candidates``
does exactly that, once, from configuration code; "auto" restores aioice's own behaviour.
"""

from __future__ import annotations

import aioice.ice
from aiortc import RTCConfiguration

_ORIGINAL = aioice.ice.get_host_addresses
MODES = ("auto", "loopback", "auto+loopback")


def use_host_candidates(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"ice_candidates must be one of {MODES}, not {mode!r}")
    if mode == "auto":
        aioice.ice.get_host_addresses = _ORIGINAL
        return

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        found = _ORIGINAL(use_ipv4, use_ipv6) if mode == "auto+loopback" else []
        return ["127.0.0.1", *found] if use_ipv4 else found

    aioice.ice.get_host_addresses = host_addresses


def rtc_configuration() -> RTCConfiguration:
    # No STUN/TURN: the hub is a public endpoint itself or runs on the clinic's network.
    return RTCConfiguration(iceServers=[])
