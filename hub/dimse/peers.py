"""The DIMSE peers: the AE titles C-MOVE may send to, kept in the index and editable while the
hub runs.

``dimse.move_destinations`` in the settings fills the index on the first start; from then on
the index is what counts, changed from the admin page, ``/api/admin/peers`` or ``tessera dimse
peer``. The C-MOVE handler of every process reads the scope's revision (one row) at each move
and the peers again when another process or node has changed them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from msgspec import UNSET, UnsetType
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import Settings
from hub.configstore.cached import CachedScope, Change, Entries
from hub.configstore.entries import Draft
from hub.dimse.config import MoveDestination, move_destinations
from hub.security.tls import ClientTls, dicom_tls_client_context

SCOPE = "dimse"
PEER = "dimse.peer"
AE_LIMIT = 16  # PS3.5 6.2: an AE title is at most 16 characters
HOST_LIMIT = 255

Peers = dict[str, MoveDestination]
PeerSource = CachedScope[Peers]
Edit = Callable[[Draft], Change]


class PeerError(ValueError):
    """A peer that cannot be used; the message says why."""


def peer_source(engine: AsyncEngine, seed: Mapping[str, MoveDestination]) -> PeerSource:
    """The peers of this process, first filled (once per index) from ``seed``."""
    return CachedScope(
        engine,
        SCOPE,
        (PEER,),
        seed={PEER: [(ae, spec_of(where)) for ae, where in seed.items()]},
        parse=peers_from,
        initial=dict(seed),
    )


def settings_peer_source(engine: AsyncEngine, settings: Settings) -> PeerSource:
    return peer_source(engine, move_destinations(settings.dimse))


def peers_from(entries: Entries) -> Peers:
    return {e.name: MoveDestination.from_setting(e.name, e.spec) for e in entries.of(PEER)}


def spec_of(where: MoveDestination) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": where.host, "port": where.port}
    if where.tls is not None:
        spec["tls"] = asdict(where.tls)
    return spec


async def listed(source: PeerSource) -> dict[str, Any]:
    """The peers as the index has them now, each with its version and last change."""
    await source.current()
    snapshot = source.snapshot
    peers = [
        {
            "ae": e.name,
            "host": e.spec["host"],
            "port": e.spec["port"],
            "tls": e.spec.get("tls") or None,
            "version": e.version,
            "updated_at": e.updated_at,
            "updated_by": e.updated_by,
        }
        for e in snapshot.of(PEER)
    ]
    return {"peers": peers, "revision": snapshot.revision}


# -- edits -------------------------------------------------------------------------------


def put_peer(
    ae: str,
    host: str,
    port: int,
    version: int | None,
    tls: dict[str, Any] | None | UnsetType = UNSET,
) -> Edit:
    """Add or move a peer. ``tls``: TLS towards it as ``checked_tls`` gives it (None: plain
    DICOM), or UNSET to keep what it had."""
    spec: dict[str, Any] = {"host": checked_host(host), "port": checked_port(port)}
    title = checked_ae(ae)

    def apply(draft: Draft) -> Change:
        old = draft.get(PEER, title)
        kept = (old.spec.get("tls") if old else None) if tls is UNSET else tls
        old, new = draft.put(PEER, title, {**spec, "tls": kept} if kept else spec, version)
        return Change(PEER, title, old, new)

    return apply


def checked_tls(value: bool | dict[str, Any] | None) -> dict[str, Any] | None:
    """TLS towards a peer as it is stored: None (plain DICOM) or its fields: the CA the peer's
    certificate is checked against (the system's CAs when absent), the hub's own certificate
    and key for a peer that asks for one, and whether to check at all. PeerError with the
    reason when a file is not there or does not load. It reads the files: call it off the
    event loop."""
    try:
        tls = ClientTls.from_setting(value)
    except TypeError as exc:
        raise PeerError(f"tls: {exc}") from None
    if tls is None:
        return None
    files = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
    for field, name in files.items():
        if name is not None and not (Path(name).is_absolute() and Path(name).is_file()):
            raise PeerError(f"tls {field}: {name!r} is not a file on the hub (an absolute path)")
    if (tls.cert_file is None) != (tls.key_file is None):
        raise PeerError("tls: a client certificate (cert_file) goes with its key (key_file)")
    try:
        dicom_tls_client_context(tls.ca_file, tls.cert_file, tls.key_file, tls.verify)
    except (OSError, ssl.SSLError) as exc:
        raise PeerError(f"tls: the certificates do not load: {exc}") from None
    return asdict(tls)


def delete_peer(ae: str, version: int | None) -> Edit:
    def apply(draft: Draft) -> Change:
        return Change(PEER, ae, draft.delete(PEER, ae, version), None)

    return apply


def checked_ae(ae: str) -> str:
    """An AE title as PS3.5 allows it: 1 to 16 characters of the default repertoire, no
    backslash, no control characters; leading and trailing spaces are not significant and
    are refused rather than silently dropped."""
    if not ae or len(ae) > AE_LIMIT:
        raise PeerError(f"an AE title is 1 to {AE_LIMIT} characters, not {len(ae)}: {ae!r}")
    if ae != ae.strip():
        raise PeerError(f"an AE title has no leading or trailing spaces: {ae!r}")
    bad = [ch for ch in ae if ch == "\\" or not (" " <= ch <= "~")]
    if bad:
        raise PeerError(
            f"an AE title holds no backslash, control or non-ASCII characters: {ae!r} has "
            f"{', '.join(repr(ch) for ch in dict.fromkeys(bad))}"
        )
    return ae


def checked_host(host: str) -> str:
    if (
        not host
        or len(host) > HOST_LIMIT
        or not host.isprintable()
        or any(c.isspace() for c in host)
    ):
        raise PeerError(
            f"a host is a name or address of 1 to {HOST_LIMIT} characters without spaces: {host!r}"
        )
    return host


def checked_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise PeerError(f"a port is 1 to 65535, not {port!r}")
    return port


# -- testing a peer ------------------------------------------------------------------------


async def echo(
    ae: str, where: MoveDestination, calling_ae: str, seconds: float
) -> tuple[bool, str]:
    """C-ECHO the peer as C-MOVE reaches it, in a thread (pynetdicom blocks), waiting at most
    ``seconds`` for each step: (answered with Success, what happened)."""
    from hub.forward import dimse_sender
    from hub.forward.config import DimseTarget, Timeouts

    target = DimseTarget(ae, where.host, where.port, ae, calling_ae, where.tls)
    timeouts = Timeouts(min(seconds, 10.0), seconds, seconds, seconds)
    return await asyncio.to_thread(dimse_sender.echo, target, timeouts)
