"""Runtime settings, resolved once at start-up from defaults, the environment and CLI flags."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

DuplicatePolicy = Literal["reject", "version"]


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
        if v := os.environ.get("TESSERA_EXTRA"):
            s.extra.update(json.loads(v))  # JSON object of package settings, e.g. forwarding
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        s.data_dir = Path(s.data_dir)
        _check_public_url(s.public_url)
        return s


def _check_public_url(url: str | None) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"public_url: {url!r} is not an http(s) URL such as https://host/path")
