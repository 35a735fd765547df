"""The recovery kit (``tessera backup init TARGET``): the keys a backup needs, kept in the
target under a passphrase, so that a restore onto a new machine gets them back.

The backup never copies ``keys/``; without the store key an encrypted archive is noise, and
without the audit key its trail cannot be checked or extended. The kit seals both with
AES-256-GCM under a key derived from the passphrase by Argon2id (RFC 9106's second
recommended parameters, stated in the kit, with a random salt). In clear, and authenticated
as the seal's associated data: the format, the KDF parameters, the key ids and the backup
signing public key, so a restore can check the kit belongs to the manifests it restores, and
can trust the public key without a copy of ``signing.pub`` kept apart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.backup.manifest import Manifest, canonical, fingerprint
from hub.security.keys import KEY_DIR

FORMAT = "tessera-recovery-kit/1"
KDF = {"name": "argon2id", "time_cost": 3, "memory_cost_kib": 64 * 1024, "parallelism": 4}
# What a kit read from a target may ask for: an altered kit must not make a restore
# allocate memory without bound.
KDF_BOUNDS = {"time_cost": 64, "memory_cost_kib": 4 << 20, "parallelism": 64}
MIN_PASSPHRASE = 12
AUDIT_KEY_FILE, STORE_KEY_FILE = "audit.key", "store.key"


class KitError(Exception):
    """A kit that cannot be made or opened: a weak or wrong passphrase, or a kit of other keys."""


@dataclass(frozen=True)
class Keys:
    audit: bytes
    store: bytes | None
    signing_public: str  # 64 hex digits

    @property
    def ids(self) -> dict[str, str]:
        ids = {"signing": fingerprint(self.signing_public), "audit": audit_key_id(self.audit)}
        if self.store is not None:
            from hub.security.at_rest import key_id

            ids["store"] = key_id(self.store).hex()
        return ids


def audit_key_id(key: bytes) -> str:
    return hashlib.sha256(b"tessera-audit-key-id" + key).hexdigest()[:16]


def seal(keys: Keys, passphrase: str) -> bytes:
    """The kit's bytes (blocking: Argon2id takes a fraction of a second on purpose)."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise KitError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    salt = secrets.token_bytes(16)
    clear = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(),
        "kdf": KDF | {"salt": _b64(salt)},
        "key_ids": keys.ids,
        "signing_public_key": keys.signing_public,
    }
    secret = {"audit": keys.audit.hex(), "store": keys.store.hex() if keys.store else None}
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_derive(passphrase, clear["kdf"])).encrypt(
        nonce, canonical(secret), canonical(clear)
    )
    return json.dumps(clear | {"nonce": _b64(nonce), "sealed": _b64(sealed)}, indent=2).encode()


def open_kit(data: bytes, passphrase: str) -> Keys:
    """The keys in the kit; ``KitError`` for a wrong passphrase or an altered kit (blocking)."""
    try:
        kit = json.loads(data)
        clear = {k: kit[k] for k in ("format", "created", "kdf", "key_ids", "signing_public_key")}
        nonce, sealed = base64.b64decode(kit["nonce"]), base64.b64decode(kit["sealed"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KitError(f"the recovery kit is unreadable ({exc})") from None
    if clear["format"] != FORMAT:
        raise KitError(f"unknown recovery kit format {clear['format']!r}")
    try:
        plain = AESGCM(_derive(passphrase, clear["kdf"])).decrypt(nonce, sealed, canonical(clear))
    except InvalidTag:
        raise KitError(
            "the passphrase does not open the recovery kit (or the kit was altered)"
        ) from None
    secret = json.loads(plain)
    store = secret["store"]
    return Keys(bytes.fromhex(secret["audit"]), bytes.fromhex(store) if store else None,
                clear["signing_public_key"])  # fmt: skip


def check_matches(keys: Keys, manifest: Manifest) -> None:
    """The kit's keys are those the backup was made with (by the ids both record)."""
    if manifest.encrypted and keys.store is None:
        raise KitError(f"backup {manifest.name} is encrypted, the recovery kit holds no store key")
    ours = keys.ids
    for what, recorded in manifest.key_ids.items():
        if what in ours and ours[what] != recorded:
            raise KitError(
                f"the recovery kit holds {what} key {ours[what]}, "
                f"backup {manifest.name} was made with {recorded}"
            )


def install(keys: Keys, data_dir: Path) -> Path | None:
    """Write the kit's keys into a data folder's ``keys/`` (mode 0600); the store key's file,
    which the restored hub is then started with (``TESSERA_STORE_KEY_FILE``)."""
    folder = data_dir / KEY_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_key(folder / AUDIT_KEY_FILE, keys.audit)
    if keys.store is None:
        return None
    _write_key(folder / STORE_KEY_FILE, keys.store)
    return folder / STORE_KEY_FILE


def _write_key(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")


def _derive(passphrase: str, kdf: dict[str, Any]) -> bytes:
    if kdf.get("name") != KDF["name"]:
        raise KitError(f"unknown key derivation {kdf.get('name')!r}")
    if any(not 1 <= kdf.get(k, 0) <= most for k, most in KDF_BOUNDS.items()):
        raise KitError(f"the recovery kit's key derivation parameters are out of bounds: {kdf}")
    return hash_secret_raw(
        passphrase.encode(),
        base64.b64decode(kdf["salt"]),
        time_cost=kdf["time_cost"],
        memory_cost=kdf["memory_cost_kib"],
        parallelism=kdf["parallelism"],
        hash_len=32,
        type=Type.ID,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
