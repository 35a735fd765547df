"""ICE configuration: host-candidate policy, and the STUN/TURN servers for both sides.

The pages and the hub get the same servers and transport policy. TURN credentials are minted
per session and side (``turn_credentials``); the shared secret stays here.

aioice gathers host candidates from ``aioice.ice.get_host_addresses`` and always leaves out
127.0.0.1; it has no option to change that list. A hub reachable only on loopback (tests, a
single-machine demo, a sandbox with no other interface) would offer zero candidates and never
connect. The only way in is to replace that module-level function, so ``use_host_candidates``
does exactly that, once, from configuration code; "auto" restores aioice's own behaviour.
"""

from __future__ import annotations

from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from hub.config import TelehealthSettings
from telehealth.turn_credentials import TurnCredential, mint

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


def ice_servers(settings: TelehealthSettings, user: str) -> list[dict[str, Any]]:
    """W3C RTCIceServer dictionaries for ``user`` (e.g. "<session>.clinic"), fresh credentials."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls:
        credential = turn_credential(settings, user)
        servers.append(
            {
                "urls": list(settings.turn_urls),
                "username": credential.username,
                "credential": credential.credential,
            }
        )
    return servers


def turn_credential(settings: TelehealthSettings, user: str) -> TurnCredential:
    return mint(settings.turn_secret, user, settings.turn_credential_seconds)


def rtc_configuration(
    settings: TelehealthSettings | None = None, user: str = "hub"
) -> RTCConfiguration:
    """The hub's own peer configuration. Without STUN/TURN settings there are no servers at all
    (aiortc would otherwise ask a public STUN server): the hub is then a public endpoint itself
    or runs on the clinic's network."""
    if settings is None:
        return RTCConfiguration(iceServers=[])
    return RTCConfiguration(
        iceServers=[RTCIceServer(**server) for server in ice_servers(settings, user)],
        iceTransportPolicy=RTCIceTransportPolicy(settings.ice_transport_policy),
    )


def has_relay_candidate(sdp: str) -> bool:
    return any(" typ relay" in line for line in sdp.splitlines() if line.startswith("a=candidate"))
