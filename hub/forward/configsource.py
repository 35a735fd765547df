"""The forwarding targets and rules, kept in the index and editable while the hub runs.

The settings (``forward.toml`` / ``forward.json`` in the data dir, ``Settings.forward``) fill the
index on the first start; from then on the index is what counts, changed from the browser, the
API or ``tessera forward target|rule``. Every process reads the scope's revision (one row) when it
routes an ingested object and before each delivery turn, and reloads the entries when another
process or node has changed them. The rest of the forwarding settings (retry policy, timeouts,
batch size) stay in the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.config import Settings
from hub.configstore import cached
from hub.configstore.cached import CachedScope, Entries
from hub.configstore.entries import Draft
from hub.forward.config import ConfigError, ForwardConfig, parse_config, settings_raw

SCOPE = "forward"
TARGET = "forward.target"
RULE = "forward.rule"
KINDS = (TARGET, RULE)
SECRET_KEYS = ("token",)
NAME_LIMIT = 64  # forward_tasks.target and .rule


class Change(cached.Change):
    """What one edit did; a target's token is shown only as set or not."""

    @staticmethod
    def shown(spec: dict[str, Any]) -> dict[str, Any]:
        return public_spec(spec)


class ConfigSource:
    """The forwarding configuration of one process: the settings' fixed part plus the index's
    targets and rules, as of the revision it last read."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._raw = settings_raw(settings)
        self._scope = CachedScope(
            engine,
            SCOPE,
            KINDS,
            seed=seed_entries(self._raw),
            parse=self._from_entries,
            initial=self._parse(self._raw),  # until the index is read: the settings alone
            invalid=ConfigError,  # e.g. a token_env gone since
        )

    @property
    def config(self) -> ForwardConfig:
        return self._scope.value

    async def current(self, conn: AsyncConnection | None = None) -> ForwardConfig:
        """The configuration as the index has it now (within ``conn``'s transaction if given)."""
        return await self._scope.current(conn)

    async def describe(self, counts: dict[str, dict[str, int]]) -> dict[str, Any]:
        """``ForwardConfig.describe`` as of now, each target and rule with its version, who
        changed it last and when, and the scope's revision."""
        described = (await self.current()).describe(counts)
        snapshot = self._scope.snapshot
        entries = {(e.kind, e.name): e for e in snapshot.entries}
        for kind, items in ((TARGET, described["targets"]), (RULE, described["rules"])):
            for item in items:
                entry = entries.get((kind, item["name"]))
                item["version"] = entry.version if entry else None
                item["updated_at"] = entry.updated_at if entry else None
                item["updated_by"] = entry.updated_by if entry else None
        described["revision"] = snapshot.revision
        return described

    async def edit(self, who: str, apply: Callable[[Draft], Change]) -> Change:
        """Apply one edit; it is refused (ConfigError) when the configuration it leaves would
        not be valid."""
        return await self._scope.edit(who, apply)

    def _from_entries(self, entries: Entries) -> ForwardConfig:
        return self._parse(
            {
                **self._raw,
                "targets": {e.name: e.spec for e in entries.of(TARGET)},
                "rules": [{**e.spec, "name": e.name} for e in entries.of(RULE)],
            }
        )

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


TOKEN_SOURCES = ("token", "token_env")


def put_target(name: str, spec: dict[str, Any], version: int | None) -> Callable[[Draft], Change]:
    def apply(draft: Draft) -> Change:
        old = draft.get(TARGET, name)
        kept = dict(spec)
        # A token is sent once (or named by its variable) and kept until one replaces it: the
        # page, which never sees it, saves a target without it.
        if old is not None and not any(key in kept for key in TOKEN_SOURCES):
            kept |= {key: old.spec[key] for key in TOKEN_SOURCES if old.spec.get(key)}
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
