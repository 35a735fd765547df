"""Telehealth settings, read from ``Settings.extra["telehealth"]`` (keeps core Settings small)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

ICE_URL = re.compile(r"(stun|stuns|turn|turns):[^\s]+")
TRANSPORT_POLICIES = ("all", "relay")


@dataclass(frozen=True)
class TelehealthSettings:
    # ICE host candidates: "auto" (aioice's default interface list), "loopback" (only
    # 127.0.0.1, for tests and single-machine demos) or "auto+loopback".
    ice_candidates: str = "auto"
    # Newest frames kept for a still, and frames waiting for the encoder during a clip.
    still_buffer_frames: int = 2
    encode_queue_frames: int = 90
    # A clip stops itself after this long; bounds memory (encoded frames are held until stored).
    max_clip_seconds: float = 60.0
    jpeg_quality: int = 90
    # A session with no peer connected for this long is closed (captures are stored first).
    idle_timeout_seconds: float = 1800.0
    max_sessions: int = 100
    # Hand a received video frame on at its marked last packet (telehealth/jitter.py).
    marker_completion: bool = True
    # STUN and TURN servers handed to both pages and to the hub's own peer connections, as
    # W3C URLs: "stun:host:3478", "turn:host:3478?transport=udp", "turn:host:3478?transport=tcp",
    # "turns:host:443?transport=tcp". The hub's aiortc uses the first TURN URL it supports.
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    # The TURN server's shared secret (coturn static-auth-secret); stays in the hub, which mints
    # per-session credentials valid for turn_credential_seconds.
    turn_secret: str = field(default="", repr=False)
    turn_credential_seconds: int = 3600
    # "relay": only relayed candidates, on the pages and at the hub (sites that require it).
    ice_transport_policy: str = "all"
    manufacturer: str = "Tessera"
    station_name: str = "TESSERA-TELEHEALTH"

    @classmethod
    def from_extra(
        cls, extra: dict[str, Any] | None, turn_secret: str | None = None
    ) -> TelehealthSettings:
        """``turn_secret``: the secret from the environment, used when ``extra`` has none."""
        values = dict((extra or {}).get("telehealth", {}))
        if turn_secret and "turn_secret" not in values:
            values["turn_secret"] = turn_secret
        if (ice := os.environ.get("TESSERA_TELEHEALTH_ICE")) and "ice_candidates" not in values:
            values["ice_candidates"] = ice  # e.g. "auto+loopback" for a one-machine demo
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown telehealth settings: {sorted(unknown)}")
        for key in ("stun_urls", "turn_urls"):
            if key in values:
                values[key] = tuple(_urls(key, values[key]))
        settings = cls(**values)
        settings.check_ice()
        return settings

    def check_ice(self) -> None:
        if self.ice_transport_policy not in TRANSPORT_POLICIES:
            raise ValueError(
                f"ice_transport_policy must be one of {TRANSPORT_POLICIES}, "
                f"not {self.ice_transport_policy!r}"
            )
        if any(not url.startswith("stun") for url in self.stun_urls):
            raise ValueError("stun_urls take stun: or stuns: URLs")
        if any(not url.startswith("turn") for url in self.turn_urls):
            raise ValueError("turn_urls take turn: or turns: URLs")
        if self.turn_urls and not self.turn_secret:
            raise ValueError("turn_urls need turn_secret (env TESSERA_TURN_SECRET)")
        if self.ice_transport_policy == "relay" and not self.turn_urls:
            raise ValueError('ice_transport_policy "relay" needs turn_urls')
        if not 60 <= self.turn_credential_seconds <= 86400:
            raise ValueError("turn_credential_seconds must be between 60 and 86400")

    @property
    def relay_only(self) -> bool:
        return self.ice_transport_policy == "relay"


def _urls(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of URL strings")
    for url in value:
        if not ICE_URL.fullmatch(url):
            raise ValueError(f"{key}: {url!r} is not a stun:, stuns:, turn: or turns: URL")
    return list(value)
