"""The dose registry's settings: ``Settings.extra["dose"]``, checked once at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from hub.config import Settings

# Names and IDs that mark a QA or phantom subject, searched case-insensitively.
QA_NAME_PATTERNS = (r"(?<![a-z])(qa|qc|phantom|physics)(?![a-z])",)
QA_ID_PATTERNS = (r"^(qa|qc|phantom)",)


@dataclass(frozen=True)
class DoseSettings:
    qa_name_patterns: tuple[str, ...] = QA_NAME_PATTERNS
    qa_id_patterns: tuple[str, ...] = QA_ID_PATTERNS
    # cumulative E (mSv) per age column above which a profile raises an alert
    alert_msv: dict[str, float] = field(
        default_factory=lambda: {
            "newborn": 10.0,
            "1y": 10.0,
            "5y": 10.0,
            "10y": 10.0,
            "adult": 50.0,
        }
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> DoseSettings:
        raw: dict[str, Any] = dict(settings.extra.get("dose") or {})
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(raw) - known):
            raise ValueError(f"dose settings: unknown key(s) {', '.join(unknown)}")
        for key in ("qa_name_patterns", "qa_id_patterns"):
            if key in raw:
                raw[key] = tuple(str(p) for p in raw[key])
                for pattern in raw[key]:
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        raise ValueError(f"dose settings: {key}: {pattern!r}: {exc}") from None
        if "alert_msv" in raw:
            raw["alert_msv"] = {str(k): float(v) for k, v in dict(raw["alert_msv"]).items()}
        return cls(**raw)
