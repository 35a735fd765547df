"""Reading a target's manifests back: every one signed by the trusted key, each naming the
hash of the one before it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.backup.manifest import Manifest, ManifestError, file_hash, open_sealed
from hub.backup.target import Target


@dataclass(frozen=True)
class Link:
    manifest: Manifest
    file_hash: str


async def verified_chain(target: Target, public_key: Ed25519PublicKey) -> list[Link]:
    """Every manifest of the target, oldest first; ``ManifestError`` names the first bad one."""
    links: list[Link] = []
    previous: str | None = None
    for name in await target.manifest_names():
        data = await target.read_manifest(name)
        manifest = open_sealed(data, public_key, name)
        if manifest.previous != previous:
            raise ManifestError(
                f"manifest {name}: the chain is broken (it follows {manifest.previous}, "
                f"but the manifest before it hashes to {previous}): one was removed or swapped"
            )
        previous = file_hash(data)
        links.append(Link(manifest, previous))
    return links


def choose(links: list[Link], *, name: str | None = None, at: datetime | None = None) -> Link:
    """The backup asked for: by name, the last one taken at or before ``at``, or the latest."""
    if not links:
        raise ManifestError("the target holds no completed backup")
    if name is not None:
        for link in links:
            if link.manifest.name == name:
                return link
        raise ManifestError(f"no backup named {name} in the target")
    if at is not None:
        before = [link for link in links if datetime.fromisoformat(link.manifest.created) <= at]
        if not before:
            raise ManifestError(f"no backup was taken at or before {at.isoformat()}")
        return before[-1]
    return links[-1]
