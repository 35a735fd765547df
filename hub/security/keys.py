"""Secret keys kept in files in the data directory (mode 0600) or given by the environment."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

KEY_DIR = "keys"


def parse_key(text: str, *, what: str) -> bytes:
    """A 256-bit key written as 64 hex digits or as base64 of 32 bytes."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raw = b""
    if len(raw) != 32:
        raise ValueError(f"{what}: expected 32 bytes as 64 hex digits or base64")
    return raw


def load_or_create(path: Path, *, what: str) -> bytes:
    """Read a key file, creating it with a fresh random key on first use."""
    if path.exists():
        return parse_key(path.read_text(), what=f"{what} ({path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def audit_key(data_dir: Path, given: str | None = None) -> bytes:
    """``given`` (TESSERA_AUDIT_KEY), else the key file in the data folder (created on first
    use)."""
    if given:
        return parse_key(given, what="TESSERA_AUDIT_KEY")
    return load_or_create(data_dir / KEY_DIR / "audit.key", what="audit key")
