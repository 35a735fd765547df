"""Telehealth settings, read from ``Settings.extra["telehealth"]`` (keeps core Settings small)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any


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
    manufacturer: str = "Tessera"
    station_name: str = "TESSERA-TELEHEALTH"

    @classmethod
    def from_extra(cls, extra: dict[str, Any] | None) -> TelehealthSettings:
        values = dict((extra or {}).get("telehealth", {}))
        if (ice := os.environ.get("TESSERA_TELEHEALTH_ICE")) and "ice_candidates" not in values:
            values["ice_candidates"] = ice  # e.g. "auto+loopback" for a one-machine demo
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown telehealth settings: {sorted(unknown)}")
        return cls(**values)
