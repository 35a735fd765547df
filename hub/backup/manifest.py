"""The signed record of one completed backup, chained to the one before it.

A manifest says what the backup holds (the snapshot, the blob list, their hashes, counts and
sizes), which software and schema wrote it, the audit chain's head, and the ids of the keys
the data needs (never the keys). It is signed with Ed25519 over its canonical JSON, and names
the hash of the previous manifest's file, so a manifest edited, swapped, removed from the
middle of the chain or replayed under a new name is found.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hub.security.keys import KEY_DIR, load_or_create

FORMAT = "tessera-backup/1"
SIGNING_KEY = "backup-signing.key"


class ManifestError(Exception):
    """A manifest that cannot be trusted: unsigned, altered, out of its chain, or unreadable."""


@dataclass(frozen=True)
class BlobRef:
    sha256: str  # the name
    size: int  # of the stored bytes
    stored_sha256: str  # hash of the stored bytes: the name itself unless they are ciphertext


@dataclass(frozen=True)
class Manifest:
    name: str
    created: str
    software: str
    schema: str | None
    rows: dict[str, int]
    snapshot: BlobRef
    blob_list: BlobRef
    blob_count: int
    blob_bytes: int
    audit_head: dict[str, Any] | None
    key_ids: dict[str, str]
    encrypted: bool
    previous: str | None  # sha256 of the previous manifest's file
    unreadable: list[dict[str, Any]] = field(default_factory=list)  # blobs found damaged
    format: str = FORMAT

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data["snapshot"] = BlobRef(**data["snapshot"])
        data["blob_list"] = BlobRef(**data["blob_list"])
        return cls(**data)


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def seal(manifest: Manifest, key: Ed25519PrivateKey) -> bytes:
    body = asdict(manifest)
    signature = key.sign(canonical(body))
    return canonical({"manifest": body, "signature": base64.b64encode(signature).decode()})


def open_sealed(data: bytes, public_key: Ed25519PublicKey, name: str) -> Manifest:
    """The manifest in a file's bytes, once its signature and name check out."""
    try:
        outer = json.loads(data)
        body, signature = outer["manifest"], base64.b64decode(outer["signature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"manifest {name}: unreadable ({exc})") from None
    try:
        public_key.verify(signature, canonical(body))
    except InvalidSignature:
        raise ManifestError(f"manifest {name}: the signature does not match") from None
    try:
        manifest = Manifest.from_dict(body)
    except (TypeError, KeyError) as exc:
        raise ManifestError(f"manifest {name}: unexpected fields ({exc})") from None
    if manifest.name != name:
        raise ManifestError(
            f"manifest {name}: it names itself {manifest.name} (a copy of another backup's)"
        )
    if manifest.format != FORMAT:
        raise ManifestError(f"manifest {name}: unknown format {manifest.format!r}")
    return manifest


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the signing key ------------------------------------------------------------------------


def signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The hub's backup signing key (created on first use, beside its other keys)."""
    seed = load_or_create(data_dir / KEY_DIR / SIGNING_KEY, what="backup signing key")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_text(key: Ed25519PrivateKey) -> str:
    """The public half as 64 hex digits: what a verifier needs, safe to copy anywhere."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def public_key_from(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.strip()))
    except ValueError as exc:
        raise ManifestError(f"not an Ed25519 public key (64 hex digits): {exc}") from None


def fingerprint(public_text: str) -> str:
    return hashlib.sha256(bytes.fromhex(public_text.strip())).hexdigest()[:16]
