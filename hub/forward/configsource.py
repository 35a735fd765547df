"""The forwarding targets and rules, kept in the index and editable while the hub runs.

The settings (``forward.toml`` / ``forward.json`` in the data dir, ``Settings.forward``) fill the
index on the first start; from then on the index is what counts, changed from the browser, the
API or ``tessera forward target|rule``. Every process reads the scope's revision (one row) when it
routes an ingested object and before each delivery turn, and reloads the entries when another
process or node has changed them. The rest of the forwarding settings (retry policy, timeouts,
batch size) stay in the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.config import Settings
from hub.configstore import entries as store
from hub.configstore.entries import Draft, Entry, Snapshot
from hub.forward.config import ConfigError, ForwardConfig, parse_config, settings_raw

log = logging.getLogger(__name__)

SCOPE = "forward"
TARGET = "forward.target"
RULE = "forward.rule"
KINDS = (TARGET, RULE)
SECRET_KEYS = ("token",)
NAME_LIMIT = 64  # forward_tasks.target and .rule


@dataclass(frozen=True)
class Change:
    """What one edit did: the entry before (None: created) and after (None: deleted)."""

    kind: str
    name: str
    old: Entry | None
    new: Entry | None

    def audit_detail(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "old": public_spec(self.old.spec) if self.old else None,
            "new": public_spec(self.new.spec) if self.new else None,
            "version": self.new.version if self.new else None,
        }


class ConfigSource:
    """The forwarding configuration of one process: the settings' fixed part plus the index's
    targets and rules, as of the revision it last read."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._raw = settings_raw(settings)
        self._revision: int | None = None
        self._snapshot = Snapshot(0, ())
        self.config = self._parse(self._raw)  # until the index is read: the settings alone

    async def current(self, conn: AsyncConnection | None = None) -> ForwardConfig:
        """The configuration as the index has it now (within ``conn``'s transaction if given)."""
        if conn is None:
            async with self.engine.begin() as own:
                return await self._refresh(own)
        return await self._refresh(conn)

    async def describe(self, counts: dict[str, dict[str, int]]) -> dict[str, Any]:
        """``ForwardConfig.describe`` as of now, each target and rule with its version, who
        changed it last and when, and the scope's revision."""
        described = (await self.current()).describe(counts)
        entries = {(e.kind, e.name): e for e in self._snapshot.entries}
        for kind, items in ((TARGET, described["targets"]), (RULE, described["rules"])):
            for item in items:
                entry = entries.get((kind, item["name"]))
                item["version"] = entry.version if entry else None
                item["updated_at"] = entry.updated_at if entry else None
                item["updated_by"] = entry.updated_by if entry else None
        described["revision"] = self._snapshot.revision
        return described

    async def edit(self, who: str, apply: Callable[[Draft], Change]) -> Change:
        """Apply one edit; it is refused (ConfigError) when the configuration it leaves would
        not be valid."""
        await self.current()  # seeds a scope never filled

        def checked(draft: Draft) -> Change:
            done = apply(draft)
            self._parse(self._with(draft.of(TARGET), draft.of(RULE)))
            return done

        done, after = await store.change(self.engine, SCOPE, KINDS, who, checked)
        self._adopt(after)
        return done

    # -- reading -------------------------------------------------------------------------
    async def _refresh(self, conn: AsyncConnection) -> ForwardConfig:
        at = await store.revision(conn, SCOPE)
        if at is None:
            await store.seed(conn, SCOPE, seed_entries(self._raw))
            at = await store.revision(conn, SCOPE)
        if at != self._revision:
            snapshot = await store.read(conn, SCOPE, KINDS)
            assert snapshot is not None
            self._adopt(snapshot)
        return self.config

    def _adopt(self, snapshot: Snapshot) -> None:
        try:
            config = self._parse(self._with(snapshot.of(TARGET), snapshot.of(RULE)))
        except ConfigError as exc:  # a settings change since (e.g. a token_env gone)
            log.error(
                "forward: configuration revision %d is not valid, the last valid one stays: %s",
                snapshot.revision,
                exc,
            )
            self._revision = snapshot.revision
            return
        if self._revision is not None and snapshot.revision != self._revision:
            log.info("forward: configuration revision %d", snapshot.revision)
        self.config, self._snapshot, self._revision = config, snapshot, snapshot.revision

    def _with(self, targets: list[Entry], rules: list[Entry]) -> dict[str, Any]:
        return {
            **self._raw,
            "targets": {e.name: e.spec for e in targets},
            "rules": [{**e.spec, "name": e.name} for e in rules],
        }

    def _parse(self, raw: dict[str, Any]) -> ForwardConfig:
        return parse_config(
            raw, default_calling_ae=self.settings.ae_title, environ=self.settings.environ
        )


def seed_entries(raw: dict[str, Any]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The settings' targets and rules as entries; a rule without a name is named after its
    place, as the settings' own reading names it."""
    targets = [(name, dict(spec)) for name, spec in (raw.get("targets") or {}).items()]
    rules: list[tuple[str, dict[str, Any]]] = []
    taken: set[str] = set()
    for index, spec in enumerate(raw.get("rules") or []):
        name = spec.get("name") or f"rule-{index + 1}"
        while name in taken:
            name = f"{name}-{index + 1}"
        taken.add(name)
        rules.append((name, {k: v for k, v in spec.items() if k != "name"}))
    return {TARGET: targets, RULE: rules}


def public_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec as it may be shown and audited: secrets only say that they are set."""
    return {k: (bool(v) if k in SECRET_KEYS else v) for k, v in spec.items()}


# -- edits -------------------------------------------------------------------------------


def put_target(name: str, spec: dict[str, Any], version: int | None) -> Callable[[Draft], Change]:
    def apply(draft: Draft) -> Change:
        old = draft.get(TARGET, name)
        kept = dict(spec)
        if old is not None and "token" not in kept and old.spec.get("token"):
            kept["token"] = old.spec["token"]  # a secret is sent once, kept unless replaced
        old, new = draft.put(TARGET, _checked_name(name), kept, version)
        return Change(TARGET, name, old, new)

    return apply


def delete_target(name: str, version: int | None) -> Callable[[Draft], Change]:
    def apply(draft: Draft) -> Change:
        users = [r.name for r in draft.of(RULE) if name in _as_list(r.spec)]
        if users:
            raise InUse(
                f"target {name!r} is named by rule(s) {', '.join(users)}: change those first"
            )
        return Change(TARGET, name, draft.delete(TARGET, name, version), None)

    return apply


def put_rule(
    name: str, spec: dict[str, Any], version: int | None, position: int | None
) -> Callable[[Draft], Change]:
    def apply(draft: Draft) -> Change:
        old, new = draft.put(RULE, _checked_name(name), spec, version, position)
        return Change(RULE, name, old, new)

    return apply


def delete_rule(name: str, version: int | None) -> Callable[[Draft], Change]:
    def apply(draft: Draft) -> Change:
        return Change(RULE, name, draft.delete(RULE, name, version), None)

    return apply


class InUse(ConfigError):
    """The entry cannot go while others refer to it."""


def _checked_name(name: str) -> str:
    if not name or len(name) > NAME_LIMIT or not name.isprintable() or name != name.strip():
        raise ConfigError(f"a name is 1 to {NAME_LIMIT} printable characters, not {name!r}")
    return name


def _as_list(spec: dict[str, Any]) -> list[str]:
    wanted = spec.get("targets", spec.get("target"))
    if wanted is None:
        return []
    return [wanted] if isinstance(wanted, str) else [str(t) for t in wanted]
