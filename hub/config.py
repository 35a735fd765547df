"""Runtime settings, resolved once at start-up from defaults, the environment and CLI flags.

This is the only module that reads the environment. Each package gets its own frozen section
(``Settings.backup``, ``.cluster``, ``.dimse``, ``.forward``, ``.hl7``, ``.jobs``, ``.security``,
``.storage``, ``.telehealth``); the server and archive settings every door shares sit on ``Settings`` itself. A value comes from, in
order: the default, ``TESSERA_EXTRA`` (a JSON object of sections), the ``TESSERA_<NAME>``
variables in ``ENVIRONMENT``, then CLI flags. An unknown key or an ill-typed value is a
``SettingsError`` that names it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

DuplicatePolicy = Literal["reject", "version"]
StorageBackend = Literal["local", "s3"]
ICE_URL = re.compile(r"(stun|stuns|turn|turns):\S+")
LIMITS = (
    "http_header_seconds",
    "http_idle_seconds",
    "http_body_min_rate",
    "http_body_grace_seconds",
    "http_connections_per_address",
    "http_connections_total",
    "uploads_open_per_user",
    "uploads_declared_bytes_per_user",
    "uploads_idle_seconds",
)


class SettingsError(ValueError):
    """A setting that cannot be used: unknown, or of the wrong type. ``key`` names it as the
    operator wrote it (``TESSERA_DIMSE_PORT``, ``TESSERA_EXTRA dimse.timeout``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


# -- the sections -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupSettings:
    """Scheduled backups (``hub.backup.duty``), run by the node that holds the ``backup`` lease."""

    # The backup folder, or the http(s):// URL of a ``tessera backup-receiver``; None: no
    # scheduled backups.
    target: str | None = None
    token_file: Path | None = None  # the receiver's bearer token, for a URL target
    interval_hours: float = 0.0  # 0: off; a fraction of an hour is allowed (0.25: every 15 min)
    # The share of the backed-up objects whose bytes are read back after each run, a different
    # share each time: all of them within 100 / verify_read_percent runs.
    verify_read_percent: float = 10.0

    def __post_init__(self) -> None:
        if self.interval_hours and self.target is None:
            raise ValueError("interval_hours needs a target (TESSERA_BACKUP_TARGET)")
        if self.verify_read_percent > 100:
            raise ValueError("verify_read_percent must be between 0 and 100")

    @property
    def scheduled(self) -> bool:
        return self.target is not None and self.interval_hours > 0

    @property
    def interval_seconds(self) -> float:
        return self.interval_hours * 3600.0


@dataclass(frozen=True)
class ClusterSettings:
    node_id: str = ""  # default: made once and kept in the data folder (hub.serve.nodes)
    heartbeat_seconds: float = 2.0  # how often a node renews its registry row and its leases
    lease_seconds: float = 10.0  # a claim not renewed for this long is free for another node
    # The janitor (held by one node at a time): how often it sweeps, and how old an object no
    # row names must be before it goes (an ingest names its object within seconds).
    sweep_seconds: float = 3600.0
    orphan_grace_seconds: float = 3600.0
    # The URL the other nodes reach this one on (a node relays to the node holding a live
    # telehealth session); default: http://<host>:<port> of this node's listener.
    advertise_url: str = ""

    def __post_init__(self) -> None:
        if self.advertise_url:
            parts = urlsplit(self.advertise_url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
                raise ValueError(
                    f"advertise_url {self.advertise_url!r} is not an http(s) URL such as "
                    "http://node-a.internal:8080"
                )
        if self.sweep_seconds <= 0 or self.orphan_grace_seconds < 0:
            raise ValueError("sweep_seconds must be above 0, orphan_grace_seconds not below")
        if not self.heartbeat_seconds > 0:
            raise ValueError("heartbeat_seconds must be more than 0")
        # A late heartbeat must not cost a node its claims: at least two renewals per lease.
        if self.lease_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be at least twice "
                f"heartbeat_seconds ({self.heartbeat_seconds:g})"
            )


@dataclass(frozen=True)
class DimseSettings:
    """The DIMSE door (hub/dimse/README.md); the port and AE title are on ``Settings``."""

    allowed_aes: tuple[str, ...] = ()  # calling AE titles allowed to associate; empty: everyone
    transfer_syntaxes: tuple[str, ...] = ()  # accepted for storage; empty: all the defaults
    # {AE title: [host, port]} or {AE title: {"host", "port", "tls"}} for C-MOVE
    move_destinations: dict[str, Any] = field(default_factory=dict)
    tls: dict[str, str] | None = None  # {"cert", "key", "ca"?}: DICOM over TLS on the port
    max_associations: int = 16
    timeout: float = 60.0  # seconds for network and archive calls
    setup_timeout: float = 10.0  # seconds a new connection has to ask for an association


@dataclass(frozen=True)
class ForwardSettings:
    """Forwarding (hub/forward/README.md). Added to ``forward.toml``/``forward.json`` in the data
    folder: targets here replace file targets of the same name, rules are appended, and every
    other key given here wins over the file's."""

    config_file: str | None = None
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: tuple[dict[str, Any], ...] = ()
    retry: dict[str, float] | None = None
    timeouts: dict[str, float] | None = None
    batch_size: int | None = None
    poll_interval: float | None = None
    enabled: bool | None = None
    keep_finished_days: float | None = None

    def given(self) -> dict[str, Any]:
        """The keys set here, in the forward file's shape."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) not in (None, (), {})
        }


@dataclass(frozen=True)
class Hl7Settings:
    """The HL7 v2 door (hub/hl7): orders from a RIS over MLLP feed the worklist."""

    port: int | None = None  # the MLLP listener's port; None: off
    host: str = "127.0.0.1"
    max_message_bytes: int = 1024**2  # a bigger message is refused and its connection closed
    idle_seconds: float = 300.0  # a connection that sends nothing for this long is closed
    tls_cert: Path | None = None  # both given: MLLP over TLS
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.port is not None and self.port > 65535:
            raise ValueError(f"port {self.port} is not a TCP port")
        if self.max_message_bytes < 1024:
            raise ValueError("max_message_bytes must be at least 1024")
        if not self.idle_seconds > 0:
            raise ValueError("idle_seconds must be more than 0")


@dataclass(frozen=True)
class JobsSettings:
    convert_workers: int = 1  # slide conversions running at once


@dataclass(frozen=True)
class SecuritySettings:
    admin_password: str | None = field(default=None, repr=False)  # the first admin's password
    audit_key: str | None = field(default=None, repr=False)  # else the key file in the data dir


@dataclass(frozen=True)
class S3Settings:
    endpoint: str | None = None  # e.g. http://127.0.0.1:8333; None: AWS for the region
    bucket: str = ""
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    prefix: str = ""  # key prefix inside the bucket
    allow_http: bool = False  # plain-HTTP endpoints (a local test engine)


@dataclass(frozen=True)
class StorageSettings:
    backend: StorageBackend = "local"
    s3: S3Settings = field(default_factory=S3Settings)
    cache_dir: Path | None = None  # node-local chunk cache in front of S3; None: data_dir/cache
    cache_bytes: int = 8 * 1024**3  # its size bound
    # Encryption at rest: on when a key file is named (created on first use); ``encryption_key``
    # given, it is the key instead of the file's.
    encryption_key_file: Path | None = None
    encryption_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TelehealthSettings:
    # ICE host candidates: "auto" (aioice's default interface list), "loopback" (only
    # 127.0.0.1, for tests and single-machine demos) or "auto+loopback".
    ice_candidates: Literal["auto", "loopback", "auto+loopback"] = "auto"
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
    ice_transport_policy: Literal["all", "relay"] = "all"
    manufacturer: str = "Tessera"
    station_name: str = "TESSERA-TELEHEALTH"

    def __post_init__(self) -> None:
        for key, scheme in (("stun_urls", "stun"), ("turn_urls", "turn")):
            for url in getattr(self, key):
                if not ICE_URL.fullmatch(url) or not url.startswith(scheme):
                    raise ValueError(f"{key}: {url!r} is not a {scheme}: or {scheme}s: URL")
        if self.turn_urls and not self.turn_secret:
            raise ValueError("turn_urls need turn_secret (TESSERA_TURN_SECRET)")
        if self.ice_transport_policy == "relay" and not self.turn_urls:
            raise ValueError('ice_transport_policy "relay" needs turn_urls')
        if not 60 <= self.turn_credential_seconds <= 86400:
            raise ValueError("turn_credential_seconds must be between 60 and 86400")

    @property
    def relay_only(self) -> bool:
        return self.ice_transport_policy == "relay"


# Names and IDs that mark a QA or phantom subject, searched case-insensitively.
QA_NAME_PATTERNS = (r"(?<![a-z])(qa|qc|phantom|physics)(?![a-z])",)
QA_ID_PATTERNS = (r"^(qa|qc|phantom)",)


def _default_alerts() -> dict[str, float]:
    return {"newborn": 10.0, "1y": 10.0, "5y": 10.0, "10y": 10.0, "adult": 50.0}


@dataclass(frozen=True)
class DoseSettings:
    """The radiation dose registry (``hub.dose``)."""

    qa_name_patterns: tuple[str, ...] = QA_NAME_PATTERNS
    qa_id_patterns: tuple[str, ...] = QA_ID_PATTERNS
    # cumulative E (mSv) per age column above which a profile raises an alert
    alert_msv: dict[str, float] = field(default_factory=_default_alerts)
    # the k-factor table estimates are made with; None: the one shipped (dose/data/k_factors.json)
    k_table: Path | None = None

    def __post_init__(self) -> None:
        for key in ("qa_name_patterns", "qa_id_patterns"):
            for pattern in getattr(self, key):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{key}: {pattern!r}: {exc}") from None
        for band, limit in self.alert_msv.items():
            if not isinstance(limit, int | float) or isinstance(limit, bool):
                raise ValueError(f"alert_msv: {band}: must be a number of mSv, not {limit!r}")


SECTIONS = (
    "backup",
    "cluster",
    "dimse",
    "dose",
    "forward",
    "hl7",
    "jobs",
    "security",
    "storage",
    "telehealth",
)


@dataclass
class Settings:
    data_dir: Path = Path("tessera-data")
    database_url: str | None = None  # default: SQLite in data_dir
    host: str = "127.0.0.1"
    port: int = 8080
    duplicate_policy: DuplicatePolicy = "reject"
    max_upload_bytes: int = 8 * 1024**3
    max_query_results: int = 1000
    frame_cache_instances: int = 256
    dimse_port: int | None = None
    ae_title: str = "TESSERA"
    workers: int = 1
    cors_origins: list[str] = field(default_factory=list)  # origins whose pages may call us
    public_url: str | None = None  # e.g. https://pacs.example.org/hub: base of absolute URLs
    trusted_proxies: list[str] = field(default_factory=list)  # addresses or CIDRs
    # Limits that keep one client from holding the server (README "Limits"). Each can be set
    # in the environment as TESSERA_<NAME>, e.g. TESSERA_HTTP_HEADER_SECONDS=5.
    http_header_seconds: float = 20.0  # a request head must arrive this soon after its start
    http_idle_seconds: float = 75.0  # an idle keep-alive connection is closed after this
    http_body_min_rate: int = 1024  # bytes per second an upload must keep up, on average ...
    http_body_grace_seconds: float = 20.0  # ... over this long: a stall this long is a 408
    http_connections_per_address: int = 128  # per process; 0: no limit (behind a proxy)
    http_connections_total: int = 1024  # per process
    uploads_open_per_user: int = 20  # resumable uploads a user may have receiving at once
    uploads_declared_bytes_per_user: int = 64 * 1024**3  # their declared sizes, added up
    uploads_idle_seconds: float = 7 * 86400.0  # an upload untouched this long is removed
    backup: BackupSettings = field(default_factory=BackupSettings)
    dimse: DimseSettings = field(default_factory=DimseSettings)
    dose: DoseSettings = field(default_factory=DoseSettings)
    forward: ForwardSettings = field(default_factory=ForwardSettings)
    hl7: Hl7Settings = field(default_factory=Hl7Settings)
    jobs: JobsSettings = field(default_factory=JobsSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    telehealth: TelehealthSettings = field(default_factory=TelehealthSettings)
    # The environment as read at start-up, for settings that name a variable (a forwarding
    # target's ``token_env``). Not passed on to reader processes.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'index.sqlite').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``environ`` (default: this process's environment), then ``overrides``
        (CLI flags; None means not given)."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        if text := environ.get("TESSERA_EXTRA"):
            values = _from_extra(text)
        for name, text in environ.items():
            if name in ENVIRONMENT and text:
                _put(values, ENVIRONMENT[name], _coerce(name, _hint(ENVIRONMENT[name]), text, True))
        _check_unknown_variables(environ, values)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = _build(cls, values, "")
        settings.environ = environ
        return settings

    def to_json(self) -> str:
        """Everything but ``environ``, for ``from_json`` in a reader process."""
        fields = dataclasses.asdict(self)
        del fields["environ"]
        return json.dumps(fields, default=str)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return _build(cls, json.loads(text), "")

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        _check_public_url(self.public_url)


# -- the environment ----------------------------------------------------------------------------

# Each variable, and the field it sets (a path into Settings).
ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "TESSERA_DATA": ("data_dir",),
    "TESSERA_DATABASE_URL": ("database_url",),
    "TESSERA_DUPLICATES": ("duplicate_policy",),
    "TESSERA_DIMSE_PORT": ("dimse_port",),
    "TESSERA_AE_TITLE": ("ae_title",),
    "TESSERA_WORKERS": ("workers",),
    "TESSERA_CORS_ORIGINS": ("cors_origins",),
    "TESSERA_PUBLIC_URL": ("public_url",),
    "TESSERA_TRUSTED_PROXIES": ("trusted_proxies",),
    **{f"TESSERA_{name.upper()}": (name,) for name in LIMITS},
    "TESSERA_ADMIN_PASSWORD": ("security", "admin_password"),
    "TESSERA_AUDIT_KEY": ("security", "audit_key"),
    "TESSERA_CONVERT_WORKERS": ("jobs", "convert_workers"),
    "TESSERA_HL7_PORT": ("hl7", "port"),
    "TESSERA_HL7_HOST": ("hl7", "host"),
    "TESSERA_HL7_MAX_MESSAGE_BYTES": ("hl7", "max_message_bytes"),
    "TESSERA_HL7_IDLE_SECONDS": ("hl7", "idle_seconds"),
    "TESSERA_HL7_TLS_CERT": ("hl7", "tls_cert"),
    "TESSERA_HL7_TLS_KEY": ("hl7", "tls_key"),
    "TESSERA_BACKUP_TARGET": ("backup", "target"),
    "TESSERA_BACKUP_TOKEN_FILE": ("backup", "token_file"),
    "TESSERA_BACKUP_INTERVAL_HOURS": ("backup", "interval_hours"),
    "TESSERA_BACKUP_VERIFY_READ_PERCENT": ("backup", "verify_read_percent"),
    "TESSERA_NODE_ID": ("cluster", "node_id"),
    "TESSERA_LEASE_SECONDS": ("cluster", "lease_seconds"),
    "TESSERA_ADVERTISE_URL": ("cluster", "advertise_url"),
    "TESSERA_TELEHEALTH_ICE": ("telehealth", "ice_candidates"),
    "TESSERA_TURN_SECRET": ("telehealth", "turn_secret"),
    "TESSERA_STORAGE_BACKEND": ("storage", "backend"),
    "TESSERA_CACHE_DIR": ("storage", "cache_dir"),
    "TESSERA_CACHE_BYTES": ("storage", "cache_bytes"),
    "TESSERA_STORE_KEY_FILE": ("storage", "encryption_key_file"),
    "TESSERA_STORE_KEY": ("storage", "encryption_key"),
    "TESSERA_S3_ENDPOINT": ("storage", "s3", "endpoint"),
    "TESSERA_S3_BUCKET": ("storage", "s3", "bucket"),
    "TESSERA_S3_REGION": ("storage", "s3", "region"),
    "TESSERA_S3_ACCESS_KEY_ID": ("storage", "s3", "access_key_id"),
    "TESSERA_S3_SECRET_ACCESS_KEY": ("storage", "s3", "secret_access_key"),
    "TESSERA_S3_PREFIX": ("storage", "s3", "prefix"),
    "TESSERA_S3_ALLOW_HTTP": ("storage", "s3", "allow_http"),
}
# A variable that starts like these is a setting, and one we do not know is a mistake.
OWN_PREFIXES = (
    "TESSERA_BACKUP_",
    "TESSERA_HTTP_",
    "TESSERA_UPLOADS_",
    "TESSERA_DIMSE_",
    "TESSERA_HL7_",
    "TESSERA_TELEHEALTH_",
    "TESSERA_STORAGE_",
    "TESSERA_STORE_",
    "TESSERA_CACHE_",
    "TESSERA_S3_",
    "TESSERA_NODE_",
    "TESSERA_LEASE_",
)


def _check_unknown_variables(environ: Mapping[str, str], values: Mapping[str, Any]) -> None:
    """Refuse a TESSERA_ variable that looks like a setting but is none (a misspelt name would
    otherwise be ignored). Other TESSERA_ names stay free: a forwarding target's ``token_env``
    may be one."""
    named = {
        str(spec.get("token_env"))
        for spec in (values.get("forward", {}).get("targets") or {}).values()
        if isinstance(spec, Mapping)
    }
    known = [*ENVIRONMENT, "TESSERA_EXTRA"]
    for name in environ:
        if not name.startswith("TESSERA_") or name in known or name in named:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if close or name.startswith(OWN_PREFIXES):
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SettingsError(name, f"not a setting{hint}")


# -- TESSERA_EXTRA ----------------------------------------------------------------------------

# Flat keys of TESSERA_EXTRA kept from before the sections: key -> (section, field).
FLAT_EXTRA = {
    **{f"dimse_{f.name}": ("dimse", f.name) for f in dataclasses.fields(DimseSettings)},
    "convert_workers": ("jobs", "convert_workers"),
    "encryption_key_file": ("storage", "encryption_key_file"),
}


def _from_extra(text: str) -> dict[str, Any]:
    try:
        extra = json.loads(text)
    except ValueError as exc:
        raise SettingsError("TESSERA_EXTRA", f"not JSON: {exc}") from None
    if not isinstance(extra, dict):
        raise SettingsError("TESSERA_EXTRA", "must be a JSON object")
    return extra_values(extra)


def extra_values(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The sections named by a TESSERA_EXTRA object, as ``Settings`` keyword values."""
    values: dict[str, Any] = {}
    for key, value in extra.items():
        if key == "dimse_acl":
            raise SettingsError(
                "TESSERA_EXTRA dimse_acl",
                "gone: the AE allow-list always applies (deny by default, C-ECHO only for "
                "AEs not on it); allow AEs with `tessera ae allow`",
            )
        if key in FLAT_EXTRA:
            _put(values, FLAT_EXTRA[key], value)
        elif key in SECTIONS:
            if not isinstance(value, Mapping):
                raise SettingsError(f"TESSERA_EXTRA {key}", "must be a JSON object")
            values.setdefault(key, {}).update(value)
        else:
            raise SettingsError(f"TESSERA_EXTRA {key}", _unknown(key, [*SECTIONS, *FLAT_EXTRA]))
    return values


def sections(**extra: Any) -> dict[str, Any]:
    """Typed sections from TESSERA_EXTRA-shaped keywords, for building ``Settings`` in code:
    ``Settings(**sections(forward={...}))``."""
    values = extra_values(extra)
    hints = get_type_hints(Settings)
    return {name: _coerce(name, hints[name], value, False) for name, value in values.items()}


# -- parsing ----------------------------------------------------------------------------------


def _put(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        values = values.setdefault(name, {})
    values[path[-1]] = value


def _hint(path: tuple[str, ...]) -> Any:
    hint: Any = Settings
    for name in path:
        hint = get_type_hints(hint)[name]
    return hint


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in values.items():
        label = f"{where}{key}"
        if key not in names:
            raise SettingsError(_label(label), _unknown(key, names))
        kwargs[key] = _coerce(label, hints[key], value, False)
    try:
        return cls(**kwargs)
    except SettingsError:
        raise
    except ValueError as exc:  # a section's own check of its values together
        raise SettingsError(_label(where.rstrip(".") or cls.__name__), str(exc)) from None


def _label(key: str) -> str:
    return key if key.startswith("TESSERA_") else f"TESSERA_EXTRA {key}"


def _unknown(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    return "unknown setting" + (f" (did you mean {close[0]!r}?)" if close else "")


def _coerce(key: str, hint: Any, value: Any, text: bool) -> Any:
    """``value`` as ``hint``; ``text``: it is an environment variable's string."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _coerce(key, hint, value, text)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):  # a section built in code, passed as a flag would be
            return value
        if not isinstance(value, Mapping):
            raise SettingsError(_label(key), "must be an object of settings")
        return _build(hint, value, f"{key}.")
    try:
        return _scalar(hint, origin, args, value, text)
    except (TypeError, ValueError) as exc:
        raise SettingsError(_label(key), str(exc)) from None


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _scalar(hint: Any, origin: Any, args: tuple, value: Any, text: bool) -> Any:
    if origin is Literal:
        if value not in args:
            raise ValueError(f"must be one of {', '.join(map(repr, args))}, not {value!r}")
        return value
    if hint is bool:
        if text and value.strip().lower() in (*_TRUE, *_FALSE):
            return value.strip().lower() in _TRUE
        if isinstance(value, bool):
            return value
        raise TypeError(f"must be true or false, not {value!r}")
    if hint in (int, float):
        return _number(hint, value, text)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"must be a string, not {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise TypeError(f"must be a path, not {value!r}")
        return Path(value)
    if origin in (tuple, list):
        items = [v.strip() for v in value.split(",") if v.strip()] if text else value
        if not isinstance(items, list | tuple):
            raise TypeError(f"must be a list, not {value!r}")
        kind = get_origin(args[0]) or args[0]
        if kind is not Any and not all(isinstance(item, kind) for item in items):
            raise TypeError(f"must be a list of {kind.__name__}, not {value!r}")
        return origin(items)
    if origin in (dict, Mapping):
        value = json.loads(value) if text else value
        if not isinstance(value, Mapping):
            raise TypeError(f"must be an object, not {value!r}")
        return dict(value)
    if hint is Any:
        return value
    raise TypeError(f"cannot read a {hint}")  # a field type this parser lacks


def _number(kind: type, value: Any, text: bool) -> int | float:
    if text:
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"must be a number, not {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"must be a number, not {value!r}")
    elif kind is int and not float(value).is_integer():
        raise TypeError(f"must be a whole number, not {value!r}")
    else:
        number = kind(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _check_public_url(url: str | None) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SettingsError(
            "public_url", f"{url!r} is not an http(s) URL such as https://host/path"
        )
