"""Runtime settings, resolved once at start-up from defaults, the environment and CLI flags."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

DuplicatePolicy = Literal["reject", "version"]
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


def _number(name: str, text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"TESSERA_{name.upper()} must be a number, not {text!r}") from None
    if value < 0:
        raise ValueError(f"TESSERA_{name.upper()} must not be negative")
    return value


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
    # The TURN server's shared secret for telehealth relay credentials; never sent to a browser.
    turn_secret: str | None = field(default=None, repr=False)
    # Objects in an S3 bucket instead of data_dir/blobs when s3_endpoint is set, read through
    # a node-local chunk cache of cache_bytes in cache_dir (default data_dir/cache).
    s3_endpoint: str | None = None
    s3_bucket: str = "tessera"
    s3_key: str | None = field(default=None, repr=False)
    s3_secret: str | None = field(default=None, repr=False)
    s3_region: str = "us-east-1"
    s3_prefix: str = "blobs/"
    cache_dir: Path | None = None
    cache_bytes: int = 8 * 1024**3
    extra: dict = field(default_factory=dict)

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
    def from_env(cls, **overrides) -> Settings:
        s = cls()
        if v := os.environ.get("TESSERA_DATA"):
            s.data_dir = Path(v)
        if v := os.environ.get("TESSERA_DATABASE_URL"):
            s.database_url = v
        if v := os.environ.get("TESSERA_DUPLICATES"):
            s.duplicate_policy = v  # type: ignore[assignment]
        if v := os.environ.get("TESSERA_DIMSE_PORT"):
            s.dimse_port = int(v)
        if v := os.environ.get("TESSERA_AE_TITLE"):
            s.ae_title = v
        if v := os.environ.get("TESSERA_WORKERS"):
            s.workers = int(v)
        if v := os.environ.get("TESSERA_CORS_ORIGINS"):
            s.cors_origins = [o.strip() for o in v.split(",") if o.strip()]
        if v := os.environ.get("TESSERA_PUBLIC_URL"):
            s.public_url = v
        if v := os.environ.get("TESSERA_TRUSTED_PROXIES"):
            s.trusted_proxies = [p.strip() for p in v.split(",") if p.strip()]
        for name in LIMITS:
            if v := os.environ.get(f"TESSERA_{name.upper()}"):
                setattr(s, name, _number(name, v, type(getattr(s, name))))
        if v := os.environ.get("TESSERA_TURN_SECRET"):
            s.turn_secret = v
        _s3_from_env(s)
        if v := os.environ.get("TESSERA_EXTRA"):
            s.extra.update(json.loads(v))  # JSON object of package settings, e.g. forwarding
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        s.data_dir = Path(s.data_dir)
        _check_public_url(s.public_url)
        return s


S3_ENV = {
    "s3_endpoint": "TESSERA_S3_ENDPOINT",
    "s3_bucket": "TESSERA_S3_BUCKET",
    "s3_key": "TESSERA_S3_KEY",
    "s3_secret": "TESSERA_S3_SECRET",
    "s3_region": "TESSERA_S3_REGION",
    "s3_prefix": "TESSERA_S3_PREFIX",
}


def _s3_from_env(s: Settings) -> None:
    for name, variable in S3_ENV.items():
        if v := os.environ.get(variable):
            setattr(s, name, v)
    if v := os.environ.get("TESSERA_CACHE_DIR"):
        s.cache_dir = Path(v)
    if v := os.environ.get("TESSERA_CACHE_BYTES"):
        s.cache_bytes = _number("cache_bytes", v, int)


def _check_public_url(url: str | None) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"public_url: {url!r} is not an http(s) URL such as https://host/path")
