"""``tessera restore TARGET --to NEWDIR``: a chosen backup into an empty data folder.

The manifest chain is checked first; then the snapshot becomes the new index and the blobs
are copied in the list's order (newest studies first), each checked against the hash the
backup recorded; last, the restored archive is verified. Anything missing or damaged is
named, by SOP Instance UID, in the report, and the restore ends with a non-zero status.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.archive.blobs.local import LocalBlobStore
from hub.backup import contents
from hub.backup.chain import choose, verified_chain
from hub.backup.copy import Damaged, copy_blob, damage, in_parallel
from hub.backup.kit import Keys, check_matches
from hub.backup.manifest import BlobRef, ManifestError
from hub.backup.target import Target

PARALLEL = 4
REPORT = "restore-report.json"


class RestoreError(Exception):
    """The restore cannot start: the destination, the target or its manifests are unfit."""


@dataclass
class RestoreReport:
    manifest: str
    blobs: int = 0
    bytes: int = 0
    damaged: list[dict] = field(default_factory=list)
    seconds_to_first_study: float | None = None
    seconds: float = 0.0
    verify: dict = field(default_factory=dict)

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0

    @property
    def clean(self) -> bool:
        return not self.damaged and self.verify.get("clean", False)


async def restore(
    target: Target,
    dest: Path,
    public_key: Ed25519PublicKey,
    *,
    name: str | None = None,
    at: datetime | None = None,
    parallel: int = PARALLEL,
    keys: Keys | None = None,
) -> RestoreReport:
    """With ``keys`` (from the recovery kit), the backup must have been made with them."""
    started = time.monotonic()
    link = choose(await verified_chain(target, public_key), name=name, at=at)
    manifest = link.manifest
    if keys is not None:
        check_matches(keys, manifest)
    _check_destination(dest)
    report = RestoreReport(manifest.name)
    store = LocalBlobStore(dest / "blobs", dest / "tmp")
    try:
        snapshot = dest / "index.sqlite"
        await _restore_snapshot(target, manifest.snapshot, snapshot)
        facts = await asyncio.to_thread(contents.read_snapshot, snapshot)
        refs = await _blob_list(target, manifest.blob_list.sha256)
        sop_uids = {n.sha256: n.sop_uids for n in facts.named}
        first_study = _first_study_blobs(facts)

        async def one(ref: BlobRef) -> None:
            try:
                copied = await copy_blob(target.blobs, store, ref.sha256, expect=ref.stored_sha256)
            except Damaged as exc:
                report.damaged.append(damage(ref.sha256, sop_uids.get(ref.sha256, ()), str(exc)))
                return
            report.blobs += 1
            report.bytes += copied.size
            first_study.discard(ref.sha256)
            if not first_study and report.seconds_to_first_study is None:
                report.seconds_to_first_study = time.monotonic() - started

        await in_parallel(refs, one, parallel)
        report.damaged += [
            damage(d["sha256"], d["sop_instance_uids"], "unreadable when it was backed up")
            for d in manifest.unreadable
        ]
    finally:
        await store.close()
    report.seconds = time.monotonic() - started
    return report


def _move_writable(blob: Path, path: Path) -> None:
    blob.replace(path)
    path.chmod(0o600)  # stored blobs are read-only; the index is written to


def _check_destination(dest: Path) -> None:
    if dest.exists() and any(dest.iterdir()):
        raise RestoreError(f"{dest} is not empty: restore into a new folder")
    dest.mkdir(parents=True, exist_ok=True)


async def _restore_snapshot(target: Target, ref: BlobRef, path: Path) -> None:
    holder = LocalBlobStore(path.parent / "tmp" / "snapshot", path.parent / "tmp")
    try:
        try:
            await copy_blob(target.blobs, holder, ref.sha256, expect=ref.stored_sha256)
        except Damaged as exc:
            raise ManifestError(f"the index snapshot is damaged: {exc}") from None
        await asyncio.to_thread(_move_writable, holder.path(ref.sha256), path)
    finally:
        await holder.close()


async def _blob_list(target: Target, name: str):
    holder = b""
    try:
        holder = b"".join([block async for block in target.blobs.stream(name)])
    except FileNotFoundError:
        raise ManifestError("the blob list of this backup is missing") from None
    if hashlib.sha256(holder).hexdigest() != name:
        raise ManifestError("the blob list of this backup is damaged")
    try:
        return contents.parse_list(holder)
    except ValueError as exc:
        raise ManifestError(f"the blob list of this backup is damaged: {exc}") from None


def _first_study_blobs(facts: contents.SnapshotFacts) -> set[str]:
    """The blobs of the newest study: once they are back, a first study can be read."""
    if not facts.named:
        return set()
    newest = facts.named[0].study_uid
    return {n.sha256 for n in facts.named if n.study_uid == newest}


def write_report(dest: Path, report: RestoreReport) -> Path:
    path = dest / REPORT
    data = asdict(report) | {"mb_per_second": round(report.mb_per_second, 1), "clean": report.clean}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
