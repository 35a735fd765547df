"""Forwarding configuration: targets, routing rules and the retry policy.

Read from ``forward.toml`` or ``forward.json`` in the data directory and from
``Settings.forward`` (``hub.config.ForwardSettings``, the same shape; targets there override
file targets of the same name, rules are appended). See hub/forward/README.md for the format.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydicom.uid import UID_dictionary

from hub.archive.model import Indexed
from hub.config import Settings
from hub.security.tls import ClientTls

CONFIG_FILES = ("forward.toml", "forward.json")
MAX_BATCH = 64  # two presentation contexts per object at most; an association carries 128


class ConfigError(ValueError):
    """The forwarding configuration is invalid; the message names the offending entry."""


@dataclass(frozen=True)
class DimseTarget:
    name: str
    host: str
    port: int
    called_ae: str
    calling_ae: str = "TESSERA"
    tls: ClientTls | None = None
    # Allow re-encoding little-endian objects between explicit and implicit VR when the
    # receiver accepts only the other one (delivery is then not byte-identical).
    convert_uncompressed: bool = False
    type: Literal["dimse"] = "dimse"

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StowTarget:
    name: str
    url: str  # DICOMweb base URL; instances are POSTed to {url}/studies
    token: str | None = field(default=None, repr=False)
    type: Literal["stow"] = "stow"

    @property
    def studies_url(self) -> str:
        return self.url.rstrip("/") + "/studies"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "url": self.url, "token": bool(self.token)}


Target = DimseTarget | StowTarget


@dataclass(frozen=True)
class Rule:
    """Send every stored instance that matches all given conditions to the targets.

    A condition left empty matches anything; within one condition any listed value matches.
    Modality and AE titles compare case-insensitively, SOP classes by UID.
    """

    name: str
    targets: tuple[str, ...]
    modality: frozenset[str] = frozenset()
    sop_class: frozenset[str] = frozenset()
    door: frozenset[str] = frozenset()
    calling_ae: frozenset[str] = frozenset()

    def matches(self, event: Indexed) -> bool:
        source = event.source
        checks = (
            (self.modality, event.modality.upper()),
            (self.sop_class, event.sop_class_uid),
            (self.door, source.door.lower()),
            (self.calling_ae, (source.calling_ae or "").strip().upper()),
        )
        return all(not wanted or value in wanted for wanted, value in checks)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "targets": list(self.targets),
            "match": {
                key: sorted(values)
                for key, values in (
                    ("modality", self.modality),
                    ("sop_class", self.sop_class),
                    ("door", self.door),
                    ("calling_ae", self.calling_ae),
                )
                if values
            },
        }


def routes_for(rules: Iterable[Rule], event: Indexed) -> list[tuple[str, str]]:
    """(rule name, target name) pairs: the first matching rule that names a target sends to it."""
    chosen: dict[str, str] = {}
    for rule in rules:
        if rule.matches(event):
            for target in rule.targets:
                chosen.setdefault(target, rule.name)
    return [(rule, target) for target, rule in chosen.items()]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: base * multiplier**(attempt-1), capped; dead letter after
    max_attempts failed attempts."""

    base: float = 10.0
    multiplier: float = 2.0
    max_delay: float = 900.0
    max_attempts: int = 12

    def delay(self, attempts: int) -> float:
        return min(self.max_delay, self.base * self.multiplier ** max(0, attempts - 1))


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0  # TCP connect / TLS handshake
    acse: float = 30.0  # association negotiation
    dimse: float = 120.0  # waiting for a C-STORE response
    network: float = 120.0  # idle socket
    http: float = 300.0  # STOW-RS: waiting for the response; a whole request may take this
    # plus its size at 256 KiB/s


@dataclass(frozen=True)
class ForwardConfig:
    targets: dict[str, Target] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    timeouts: Timeouts = Timeouts()
    batch_size: int = 16  # instances sent over one association / one worker turn
    poll_interval: float = 5.0  # seconds between queue scans when nothing wakes the worker
    enabled: bool = True  # False: enqueue, but do not run the worker
    keep_finished_days: float = 30.0  # done/cancelled tasks are deleted after this long

    def targets_for(self, event: Indexed) -> list[tuple[str, str]]:
        """(rule name, target name) pairs for a stored instance, one per distinct target."""
        return routes_for(self.rules, event)

    def describe(self, counts: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
        """The configuration as JSON (no secrets); with queue ``counts`` ({target: {state: n}})
        each target shows its tasks, and tasks of targets no longer configured are listed."""
        counts = counts or {}
        return {
            "targets": [
                {**t.describe(), "tasks": counts.get(name, {})} for name, t in self.targets.items()
            ],
            "unconfigured": {n: c for n, c in counts.items() if n not in self.targets},
            "rules": [r.describe() for r in self.rules],
            "retry": asdict(self.retry),
            "timeouts": asdict(self.timeouts),
            "batch_size": self.batch_size,
            "poll_interval": self.poll_interval,
            "enabled": self.enabled,
            "keep_finished_days": self.keep_finished_days,
        }


# -- loading ------------------------------------------------------------------------------


def load_config(settings: Settings) -> ForwardConfig:
    """Merge the data-dir file (if any) with Settings.forward."""
    return parse_config(
        settings_raw(settings), default_calling_ae=settings.ae_title, environ=settings.environ
    )


def settings_raw(settings: Settings) -> dict[str, Any]:
    """The configuration as the data-dir file and Settings.forward give it, merged, unparsed."""
    extra = settings.forward.given()
    file_part: dict[str, Any] = {}
    path = _config_path(settings, extra.pop("config_file", None))
    if path is not None:
        file_part = _read_file(path)
    merged = {**file_part, **{k: v for k, v in extra.items() if k not in ("targets", "rules")}}
    merged["targets"] = {**(file_part.get("targets") or {}), **(extra.get("targets") or {})}
    merged["rules"] = [*(file_part.get("rules") or []), *(extra.get("rules") or [])]
    return merged


def _config_path(settings: Settings, explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        path = path if path.is_absolute() else settings.data_dir / path
        if not path.is_file():
            raise ConfigError(f"forward config file {path} does not exist")
        return path
    for name in CONFIG_FILES:
        if (settings.data_dir / name).is_file():
            return settings.data_dir / name
    return None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".toml":
            with open(path, "rb") as f:
                return tomllib.load(f)
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read forward config {path}: {exc}") from exc


def parse_config(
    raw: dict[str, Any],
    default_calling_ae: str = "TESSERA",
    environ: Mapping[str, str] | None = None,
) -> ForwardConfig:
    """``environ``: the variables a STOW target's ``token_env`` may name."""
    targets = {
        name: _parse_target(name, spec, default_calling_ae, environ or {})
        for name, spec in (raw.get("targets") or {}).items()
    }
    rules = tuple(parse_rule(i, spec, targets) for i, spec in enumerate(raw.get("rules") or []))
    try:
        config = ForwardConfig(
            targets=targets,
            rules=rules,
            retry=RetryPolicy(**(raw.get("retry") or {})),
            timeouts=Timeouts(**(raw.get("timeouts") or {})),
            batch_size=int(raw.get("batch_size", ForwardConfig.batch_size)),
            poll_interval=float(raw.get("poll_interval", ForwardConfig.poll_interval)),
            enabled=bool(raw.get("enabled", True)),
            keep_finished_days=float(
                raw.get("keep_finished_days", ForwardConfig.keep_finished_days)
            ),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"forward config: {exc}") from exc
    _check_ranges(config)
    return config


def _check_ranges(config: ForwardConfig) -> None:
    retry = config.retry
    problems = [
        (not 1 <= config.batch_size <= MAX_BATCH, f"batch_size must be 1..{MAX_BATCH}"),
        (config.poll_interval <= 0, "poll_interval must be positive"),
        (config.keep_finished_days < 0, "keep_finished_days must not be negative"),
        (retry.base <= 0 or retry.max_delay < retry.base, "retry needs 0 < base <= max_delay"),
        (retry.multiplier < 1, "retry multiplier must be at least 1"),
        (retry.max_attempts < 1, "retry max_attempts must be at least 1"),
    ]
    for bad, message in problems:
        if bad:
            raise ConfigError(f"forward config: {message}")


def _parse_target(
    name: str, spec: dict[str, Any], default_calling_ae: str, environ: Mapping[str, str]
) -> Target:
    kind = spec.get("type", "dimse")
    try:
        if kind == "dimse":
            return DimseTarget(
                name=name,
                host=spec["host"],
                port=_port(name, spec["port"]),
                called_ae=_ae_title(name, spec["called_ae"]),
                calling_ae=_ae_title(name, spec.get("calling_ae", default_calling_ae)),
                tls=ClientTls.from_setting(spec.get("tls")),
                convert_uncompressed=bool(spec.get("convert_uncompressed", False)),
            )
        if kind == "stow":
            token = spec.get("token")
            if not token and spec.get("token_env"):
                token = environ.get(spec["token_env"])
            return StowTarget(name=name, url=spec["url"], token=token)
    except KeyError as exc:
        raise ConfigError(f"forward target {name!r} lacks {exc.args[0]!r}") from exc
    except TypeError as exc:
        raise ConfigError(f"forward target {name!r}: {exc}") from exc
    raise ConfigError(f"forward target {name!r}: unknown type {kind!r} (dimse or stow)")


def _ae_title(name: str, value: Any) -> str:
    title = str(value).strip()
    if not 0 < len(title) <= 16 or "\\" in title or not title.isprintable():
        raise ConfigError(f"forward target {name!r}: {value!r} is not an AE title (1-16 chars)")
    return title


def _port(name: str, value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536:
        raise ConfigError(f"forward target {name!r}: port must be 1..65535, not {value!r}")
    return port


RULE_KEYS = frozenset({"name", "targets", "target", "match"})
MATCH_KEYS = frozenset({"modality", "sop_class", "door", "calling_ae"})


def parse_rule(index: int, spec: dict[str, Any], targets: dict[str, Target]) -> Rule:
    name = spec.get("name") or f"rule-{index + 1}"
    wanted = _as_list(spec.get("targets", spec.get("target")))
    if not wanted:
        raise ConfigError(f"forward rule {name!r} names no target")
    unknown = [t for t in wanted if t not in targets]
    if unknown:
        raise ConfigError(f"forward rule {name!r} names unknown target(s) {unknown}")
    # A misspelt key must not leave a rule that sends everything (a match key beside "match"
    # rather than under it would otherwise be ignored, and the rule match every object).
    if extra := set(spec) - RULE_KEYS:
        misplaced = sorted(extra & MATCH_KEYS)
        hint = f'; put {", ".join(misplaced)} under "match"' if misplaced else ""
        raise ConfigError(f"forward rule {name!r}: unknown key(s) {sorted(extra)}{hint}")
    match = spec.get("match") or {}
    if extra := set(match) - MATCH_KEYS:
        raise ConfigError(f"forward rule {name!r}: unknown match key(s) {sorted(extra)}")
    return Rule(
        name=name,
        targets=tuple(wanted),
        modality=frozenset(v.upper() for v in _as_list(match.get("modality"))),
        sop_class=frozenset(sop_class_uid(v) for v in _as_list(match.get("sop_class"))),
        door=frozenset(v.lower() for v in _as_list(match.get("door"))),
        calling_ae=frozenset(v.strip().upper() for v in _as_list(match.get("calling_ae"))),
    )


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


_KEYWORD_TO_UID = {entry[4]: uid for uid, entry in UID_dictionary.items() if entry[4]}


def sop_class_uid(value: str) -> str:
    """Accept a UID or its pydicom keyword (e.g. VLWholeSlideMicroscopyImageStorage)."""
    if value[:1].isdigit():
        return value
    try:
        return _KEYWORD_TO_UID[value]
    except KeyError:
        raise ConfigError(f"unknown SOP class {value!r}: give a UID or a pydicom keyword") from None
