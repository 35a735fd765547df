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
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import TelehealthSettings
from hub.configstore import entries as store
from hub.configstore.entries import Draft, Entry

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Change:
    old: dict[str, Any]
    new: dict[str, Any]
    version: int

    def audit_detail(self) -> dict[str, Any]:
        old, new = public(self.old), public(self.new)
        changed = sorted(k for k in new if old.get(k) != new[k])
        if self.old.get(SECRET) != self.new.get(SECRET):
            changed.append("turn_secret_changed")
        return {
            "old": {k: old.get(k) for k in changed},
            "new": {k: new.get(k, True) for k in changed},
            "version": self.version,
        }


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


class LiveSettings:
    """One process's view of the telehealth settings, as of the revision it last read."""

    def __init__(self, engine: AsyncEngine, base: TelehealthSettings) -> None:
        self.engine = engine
        self.base = base
        self.settings = base  # until the index is read
        self.entry: Entry | None = None  # what they were read from: version, who, when
        self._revision: int | None = None

    async def current(self) -> TelehealthSettings:
        async with self.engine.begin() as conn:
            at = await store.revision(conn, SCOPE)
            if at is None:
                await store.seed(conn, SCOPE, {KIND: [(NAME, editable(self.base))]})
                at = await store.revision(conn, SCOPE)
            if at != self._revision:
                snapshot = await store.read(conn, SCOPE, (KIND,))
                assert snapshot is not None
                self._adopt(snapshot.of(KIND))
                self._revision = at
        return self.settings

    async def change(self, who: str, values: dict[str, Any], version: int | None) -> Change:
        """Change the given values (the others keep theirs); ``version``: refuse (VersionConflict)
        unless the settings are still at it."""
        try:
            values = msgspec.to_builtins(msgspec.convert(values, SettingsChange))
        except msgspec.ValidationError as exc:
            raise SettingsRefused(str(exc)) from None
        await self.current()  # seeds a scope never filled

        def apply(draft: Draft) -> Change:
            entry = draft.get(KIND, NAME)
            old = entry.spec if entry else editable(self.base)
            new = editable(applied(self.base, {**old, **values}))
            _, saved = draft.put(KIND, NAME, new, version)
            return Change(old, new, saved.version)

        done, after = await store.change(self.engine, SCOPE, (KIND,), who, apply)
        self._adopt(after.of(KIND))
        return done

    def _adopt(self, found: list[Entry]) -> None:
        if not found:
            return
        try:
            self.settings = applied(self.base, found[0].spec)
        except SettingsRefused as exc:  # the fixed part of the settings changed since
            log.error("telehealth: the stored settings do not apply, the last ones stay: %s", exc)
            return
        self.entry = found[0]

    def describe(self) -> dict[str, Any]:
        """The values without the secret, with their version and who changed them last."""
        entry = self.entry
        return {
            **public(editable(self.settings)),
            "version": entry.version if entry else 0,
            "updated_by": entry.updated_by if entry else "",
            "updated_at": entry.updated_at if entry else 0.0,
        }
