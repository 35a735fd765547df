"""The telehealth settings an administrator may change while the hub runs, kept in the index.

The STUN and TURN servers, the relay-only policy and the session limits are filled from the
settings (``Settings.telehealth``) on the first start; from then on the index is what counts,
changed from the browser, the API or ``tessera telehealth settings``. A process reads the scope's
revision (one row) when a session starts, so every new session of every process and node uses
the latest values; sessions already open keep theirs. The other telehealth settings (ICE host
candidates, frame buffers) stay in the settings.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import TelehealthSettings
from hub.configstore import cached
from hub.configstore.cached import CachedScope, Entries
from hub.configstore.entries import Draft

SCOPE = "telehealth"
KIND = "telehealth.settings"
NAME = "live"
EDITABLE = (
    "stun_urls",
    "turn_urls",
    "turn_secret",
    "turn_credential_seconds",
    "ice_transport_policy",
    "max_sessions",
    "idle_timeout_seconds",
    "max_clip_seconds",
    "jpeg_quality",
)
SECRET = "turn_secret"


IceUrls = Annotated[list[Annotated[str, Meta(max_length=256)]], Meta(max_length=8)]


class SettingsChange(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The values to change, each within its bounds; those left out keep theirs."""

    stun_urls: IceUrls | UnsetType = UNSET
    turn_urls: IceUrls | UnsetType = UNSET
    turn_secret: Annotated[str, Meta(max_length=256)] | UnsetType = UNSET
    turn_credential_seconds: Annotated[int, Meta(ge=60, le=86400)] | UnsetType = UNSET
    ice_transport_policy: Literal["all", "relay"] | UnsetType = UNSET
    max_sessions: Annotated[int, Meta(ge=1, le=10_000)] | UnsetType = UNSET
    idle_timeout_seconds: Annotated[float, Meta(ge=60, le=7 * 86400)] | UnsetType = UNSET
    max_clip_seconds: Annotated[float, Meta(gt=0, le=600)] | UnsetType = UNSET
    jpeg_quality: Annotated[int, Meta(ge=50, le=100)] | UnsetType = UNSET


class SettingsRefused(ValueError):
    """The values would leave telehealth unusable (say, relay-only without a TURN server)."""


class Change(cached.Change):
    @staticmethod
    def shown(spec: dict[str, Any]) -> dict[str, Any]:
        return public(spec)

    def audit_detail(self) -> dict[str, Any]:
        secrets = [entry.spec.get(SECRET) if entry else None for entry in (self.old, self.new)]
        return {**super().audit_detail(), "turn_secret_changed": secrets[0] != secrets[1]}


def editable(settings: TelehealthSettings) -> dict[str, Any]:
    """The editable values, JSON-shaped."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in ((k, getattr(settings, k)) for k in EDITABLE)
    }


def public(values: dict[str, Any]) -> dict[str, Any]:
    """The values without the TURN secret; whether one is set instead."""
    shown = {k: v for k, v in values.items() if k != SECRET}
    shown["turn_secret_set"] = bool(values.get(SECRET))
    return shown


def applied(base: TelehealthSettings, values: dict[str, Any]) -> TelehealthSettings:
    """``base`` with ``values``; SettingsRefused when the result is not a usable configuration."""
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in EDITABLE}
    try:
        return dataclasses.replace(base, **given)
    except (TypeError, ValueError) as exc:
        raise SettingsRefused(str(exc)) from None


class LiveSettings(CachedScope[TelehealthSettings]):
    """One process's view of the telehealth settings, as of the revision it last read."""

    def __init__(self, engine: AsyncEngine, base: TelehealthSettings) -> None:
        super().__init__(
            engine,
            SCOPE,
            (KIND,),
            seed={KIND: [(NAME, editable(base))]},
            parse=partial(settings_from, base),
            initial=base,
            invalid=SettingsRefused,
        )
        self.base = base

    async def change(self, who: str, values: dict[str, Any], version: int | None) -> Change:
        """Change the given values (the others keep theirs); ``version``: refuse (VersionConflict)
        unless the settings are still at it."""
        try:
            values = msgspec.to_builtins(msgspec.convert(values, SettingsChange))
        except msgspec.ValidationError as exc:
            raise SettingsRefused(str(exc)) from None

        def apply(draft: Draft) -> Change:
            entry = draft.get(KIND, NAME)
            kept = entry.spec if entry else editable(self.base)
            old, new = draft.put(
                KIND, NAME, editable(applied(self.base, {**kept, **values})), version
            )
            return Change(KIND, NAME, old, new)

        return await self.edit(who, apply)

    def describe(self) -> dict[str, Any]:
        """The values without the secret, with their version and who changed them last."""
        entry = next(iter(self.snapshot.of(KIND)), None)
        return {
            **public(editable(self.value)),
            "version": entry.version if entry else 0,
            "updated_by": entry.updated_by if entry else "",
            "updated_at": entry.updated_at if entry else 0.0,
        }


def settings_from(base: TelehealthSettings, entries: Entries) -> TelehealthSettings:
    """The stored values over ``base``: SettingsRefused when they no longer apply to it (its
    fixed part changed since)."""
    found = entries.of(KIND)
    return applied(base, found[0].spec) if found else base
