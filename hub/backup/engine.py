"""``tessera backup TARGET``: hot and incremental; a killed run leaves no manifest.

The order is what makes it safe: snapshot the index, copy every blob the snapshot names that
the target lacks (hashed while read, so bit rot at the source is found), store the snapshot
and the blob list, and only then write the manifest that names them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from hub.archive.archive import Archive
from hub.archive.blobs import BlobStore
from hub.archive.blobs.digest import stored_digest
from hub.archive.migrations.runner import read_state
from hub.backup import contents, snapshot
from hub.backup.chain import verified_chain
from hub.backup.copy import Damaged, copy_blob, damage, in_parallel
from hub.backup.kit import audit_key_id
from hub.backup.manifest import (
    BlobRef,
    Manifest,
    ManifestError,
    fingerprint,
    public_key_from,
    public_text,
    seal,
    signing_key,
)
from hub.backup.target import Target
from hub.security.keys import audit_key

PARALLEL = 4


@dataclass
class BackupReport:
    manifest: str
    blobs: int = 0
    copied: int = 0
    copied_bytes: int = 0
    unreadable: list[dict] = field(default_factory=list)
    seconds: float = 0.0


async def run_backup(archive: Archive, target: Target, *, parallel: int = PARALLEL) -> BackupReport:
    started = time.monotonic()
    key = signing_key(archive.settings.data_dir)
    public = await pin_public_key(target, public_text(key))
    links = await verified_chain(target, public_key_from(public))
    previous = links[-1] if links else None
    known = await _previous_list(target, previous.manifest) if previous else {}
    await target.blobs.clear_spools()

    name = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    spool_dir = target.spool_dir
    spool_dir.mkdir(parents=True, exist_ok=True)
    snap = spool_dir / f"snapshot-{name}.sqlite"
    try:
        await snapshot.take(archive.engine, snap)
        facts = await _in_thread(contents.read_snapshot, snap)
        report = BackupReport(name, blobs=len(facts.named))
        refs = await _copy_missing(archive, target, facts, known, report, parallel)
        snapshot_ref = await _store_file(target, snap)
    finally:
        snap.unlink(missing_ok=True)
    list_bytes = contents.format_list(refs)
    list_sha = await target.blobs.put_bytes(list_bytes)
    list_ref = BlobRef(list_sha, len(list_bytes), list_sha)
    manifest = Manifest(
        name=name,
        created=datetime.now(UTC).isoformat(),
        software=version("tessera-hub"),
        schema=(await read_state(archive.engine)).current,
        rows=facts.rows,
        snapshot=snapshot_ref,
        blob_list=list_ref,
        blob_count=len(refs),
        blob_bytes=sum(r.size for r in refs),
        audit_head=facts.audit_head,
        key_ids=_key_ids(archive, public),
        encrypted=_raw(archive.store) is not archive.store,
        previous=previous.file_hash if previous else None,
        unreadable=report.unreadable,
    )
    await target.write_manifest(name, seal(manifest, key))
    report.seconds = time.monotonic() - started
    return report


async def pin_public_key(target: Target, ours: str) -> str:
    """A target takes the manifests of one signing key: the first backup records it."""
    recorded = await target.read_public_key()
    if recorded is None:
        await target.write_public_key(ours + "\n")
        return ours
    if recorded.strip() != ours:
        raise ManifestError(
            f"the target's manifests are signed by key {fingerprint(recorded)}, "
            f"this hub signs with {fingerprint(ours)}: back up to a target of its own"
        )
    return ours


async def _previous_list(target: Target, manifest: Manifest) -> dict[str, BlobRef]:
    try:
        data = await _read_all(target.blobs, manifest.blob_list.sha256)
        return {r.sha256: r for r in contents.parse_list(data)}
    except (Damaged, ValueError, FileNotFoundError):
        return {}  # copied blobs are then hashed again below


async def _copy_missing(
    archive: Archive,
    target: Target,
    facts: contents.SnapshotFacts,
    known: dict[str, BlobRef],
    report: BackupReport,
    parallel: int,
) -> list[BlobRef]:
    source = _raw(archive.store)
    plain = source is archive.store
    found: dict[str, BlobRef] = {}

    async def one(named: contents.Named) -> None:
        sha = named.sha256
        if await target.blobs.exists(sha):
            found[sha] = known.get(sha) or await _hash_stored(target.blobs, sha)
            return
        try:
            ref = await copy_blob(source, target.blobs, sha, expect=sha if plain else None)
        except Damaged as exc:
            report.unreadable.append(damage(sha, named.sop_uids, str(exc)))
            return
        found[sha] = ref
        report.copied += 1
        report.copied_bytes += ref.size

    await in_parallel(facts.named, one, parallel)
    return [found[n.sha256] for n in facts.named if n.sha256 in found]


async def _hash_stored(store: BlobStore, name: str) -> BlobRef:
    sha, size = await stored_digest(store, name)
    return BlobRef(name, size, sha)


async def _store_file(target: Target, path: Path) -> BlobRef:
    spool = await _in_thread(target.blobs.spool)
    try:

        def fill() -> tuple[str, int]:
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    spool.write(block)
            return spool.finish()

        sha, size = await _in_thread(fill)
        await target.blobs.put(spool)
    finally:
        await _in_thread(spool.discard)
    return BlobRef(sha, size, sha)


async def _read_all(store: BlobStore, name: str) -> bytes:
    return b"".join([block async for block in store.stream(name)])


def _raw(store: BlobStore) -> BlobStore:
    """The store holding the bytes as stored: an encrypted store's ciphertext is copied."""
    return getattr(store, "inner", store)


def _key_ids(archive: Archive, public: str) -> dict[str, str]:
    settings = archive.settings
    ids = {
        "signing": fingerprint(public),
        "audit": audit_key_id(audit_key(settings.data_dir, settings.security.audit_key)),
    }
    store_key = getattr(archive.store, "key_id", None)
    if store_key:
        ids["store"] = store_key.hex() if isinstance(store_key, bytes) else str(store_key)
    return ids


async def _in_thread(fn, *args):
    return await asyncio.to_thread(fn, *args)
