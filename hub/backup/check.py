"""``tessera backup verify TARGET``: is every backup whole, and is it still ours?

The chain and the signatures always; the existence and size of every object of the latest
backup; with ``read_fraction`` > 0, the bytes of that share of its blobs (all of them at 1.0)
read back and hashed: a random sample, or with ``turn`` the turn-th slice of the blobs in name
order, so that successive turns read every blob of an unchanged backup in 1 / fraction turns.
The result is written to the target as a signed verification record.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.archive.blobs import BlobMissing
from hub.archive.blobs.digest import stored_digest
from hub.backup import contents
from hub.backup.chain import verified_chain
from hub.backup.manifest import BlobRef, ManifestError, canonical
from hub.backup.target import Target


@dataclass
class CheckReport:
    manifests: int = 0
    latest: str | None = None
    objects: int = 0
    read: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


async def check_target(
    target: Target,
    public_key: Ed25519PublicKey,
    *,
    read_fraction: float = 0.0,
    turn: int | None = None,
    record_with: Ed25519PrivateKey | None = None,
) -> CheckReport:
    report = CheckReport()
    try:
        links = await verified_chain(target, public_key)
    except ManifestError as exc:
        report.problems.append(str(exc))
        return report
    report.manifests = len(links)
    if not links:
        report.problems.append("the target holds no completed backup")
        return report
    manifest = links[-1].manifest
    report.latest = manifest.name
    always = [manifest.snapshot, manifest.blob_list]
    try:
        listed = contents.parse_list(await _read(target, manifest.blob_list))
    except (BlobMissing, FileNotFoundError, ValueError) as exc:
        report.problems.append(f"the blob list of {manifest.name} is unusable: {exc}")
        listed = []
    sample = _sample(listed, read_fraction, turn) | set(always)
    for ref in always + listed:
        report.objects += 1
        problem = await _check_one(target, ref, read=ref in sample)
        if problem:
            report.problems.append(problem)
        elif ref in sample and ref not in always:
            report.read += 1
    if record_with is not None:
        await _record(target, report, record_with)
    return report


async def _read(target: Target, ref: BlobRef) -> bytes:
    data = b"".join([block async for block in target.blobs.stream(ref.sha256)])
    if await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest()) != ref.stored_sha256:
        raise ValueError("its bytes do not match the manifest")
    return data


async def _check_one(target: Target, ref: BlobRef, *, read: bool) -> str | None:
    try:
        size = await target.blobs.size(ref.sha256)
    except (BlobMissing, FileNotFoundError):
        return f"blob {ref.sha256} is missing"
    if size != ref.size:
        return f"blob {ref.sha256} has {size} bytes, the backup recorded {ref.size}"
    if not read:
        return None
    if (await stored_digest(target.blobs, ref.sha256))[0] != ref.stored_sha256:
        return f"blob {ref.sha256} does not hash to what was backed up"
    return None


def _sample(refs: list[BlobRef], fraction: float, turn: int | None) -> set[BlobRef]:
    if fraction >= 1.0:
        return set(refs)
    if fraction <= 0.0 or not refs:
        return set()
    if turn is None:
        count = max(1, round(len(refs) * fraction))
        return set(random.SystemRandom().sample(refs, count))
    ordered = sorted(refs, key=lambda ref: ref.sha256)
    count = math.ceil(len(ordered) * fraction)
    start = turn * count % len(ordered)
    return set((ordered + ordered)[start : start + count])


async def _record(target: Target, report: CheckReport, key: Ed25519PrivateKey) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    body = asdict(report) | {"at": datetime.now(UTC).isoformat(), "clean": report.clean}
    signed = {"verification": body, "signature": key.sign(canonical(body)).hex()}
    await target.write_record(f"verify-{stamp}", canonical(signed))
