"""The DIMSE allow-list: which calling AE titles may use which services, and as whom.

Deny by default: an AE title that is not on the list gets C-ECHO and nothing else. Each entry
maps the AE to a principal with a role, so that its queries and retrievals are limited exactly
like that principal's DICOMweb reads (``hub.security.visibility``): bound to an account with
``user``, the AE *is* that account (a clinic's modality reads and writes what the clinic's web
account does); with ``role``, it is an AE-only principal named ``ae:<title>``. An entry may also
require a source address (or network) and, on the TLS port, a client certificate.

The title ``*`` matches every AE not listed by name. It is never implied: it exists only when
an administrator adds it, and the hub warns about it at start-up and in ``tessera ae list``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.configstore.entries import VersionConflict, check_version
from hub.security.accounts import AE_PRINCIPAL_PREFIX, Principal
from hub.security.dimse_services import SERVICES
from hub.security.policy import ROLES
from hub.security.tables import ae_permissions, users

log = logging.getLogger(__name__)

# The permission each service needs from the principal's role: the one its DICOMweb (or REST)
# counterpart needs, so that an AE can do no more than its account could over HTTP.
PERMISSION = {
    "store": "dicomweb.write",
    "find": "dicomweb.read",
    "move": "dicomweb.read",
    "get": "dicomweb.read",
    "worklist": "worklist.read",
}
ANY_AE = "*"
_FINGERPRINT = re.compile(r"^(sha256:)?([0-9a-f]{2}(:?[0-9a-f]{2}){31})$")


@dataclass(frozen=True)
class Peer:
    """What the SCP knows of the calling side of an association."""

    ae_title: str
    address: str
    cert_sha256: str | None = None  # hex digest of the client certificate (DER), TLS only
    cert_subject: str | None = None  # its subject, RFC 4514


@dataclass(frozen=True)
class AeGrant:
    """An allowed AE: who it acts as and what it may use."""

    ae_title: str  # the entry that matched: the calling title, or "*"
    principal: Principal
    services: frozenset[str]

    def may(self, service: str) -> bool:
        return service in self.services and self.principal.has(PERMISSION[service])


def _normalise(ae_title: str) -> str:
    title = ae_title.strip()
    if not 0 < len(title) <= 16 or not (title.isascii() and title.isprintable()) or "\\" in title:
        raise ValueError(f"invalid AE title {ae_title!r}")
    return title


def normalise_address(address: str) -> str:
    """A source address or network, as stored: "10.1.2.3/32", "10.1.2.0/24", "::1/128"."""
    try:
        return str(ipaddress.ip_network(address.strip(), strict=False))
    except ValueError as exc:
        raise ValueError(f"{address!r} is not an IP address or network (CIDR)") from exc


def normalise_certificate(value: str) -> str:
    """A certificate binding: "sha256:<64 hex digits>" (colons allowed) or a subject DN."""
    text = value.strip()
    if fingerprint := _FINGERPRINT.match(text.lower()):
        return "sha256:" + fingerprint.group(2).replace(":", "")
    try:
        return x509.Name.from_rfc4514_string(text).rfc4514_string()
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is neither a SHA-256 fingerprint nor a certificate subject"
        ) from exc


def _matches_certificate(binding: str, peer: Peer) -> bool:
    if binding.startswith("sha256:"):
        return peer.cert_sha256 is not None and binding == f"sha256:{peer.cert_sha256}"
    return peer.cert_subject is not None and binding == peer.cert_subject


def _in_network(network: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network)
    except ValueError:
        return False


async def resolve(engine: AsyncEngine, peer: Peer) -> AeGrant | None:
    """The grant of a calling AE; None when it is not allowed (C-ECHO only)."""
    try:
        title = _normalise(peer.ae_title)
    except ValueError:
        return None
    async with engine.connect() as conn:
        rows = {
            r.ae_title: r
            for r in await conn.execute(
                select(ae_permissions).where(ae_permissions.c.ae_title.in_([title, ANY_AE]))
            )
        }
        row = rows.get(title) or rows.get(ANY_AE)
        if row is None:
            return None
        if row.address and not _in_network(row.address, peer.address):
            log.info(
                "DIMSE: AE %s from %s is bound to %s: refused", title, peer.address, row.address
            )
            return None
        if row.certificate and not _matches_certificate(row.certificate, peer):
            log.info("DIMSE: AE %s without its bound client certificate: refused", title)
            return None
        principal = await _principal(conn, row)
    if principal is None:
        return None
    services = frozenset(s for s in SERVICES if row._mapping[s])
    return AeGrant(row.ae_title, principal, services)


async def _principal(conn, row) -> Principal | None:
    if row.role is not None:
        return Principal(user=row.principal, role=row.role, user_id=0, via="dimse")
    account = (
        await conn.execute(
            select(users.c.id, users.c.role, users.c.disabled).where(
                users.c.username == row.principal
            )
        )
    ).first()
    if account is None or account.disabled:
        log.info("DIMSE: AE %s acts as %s, who is gone or disabled", row.ae_title, row.principal)
        return None
    return Principal(user=row.principal, role=account.role, user_id=account.id, via="dimse")


async def ae_permitted(
    engine: AsyncEngine, calling_ae: str, service: str, address: str = ""
) -> bool:
    """May ``calling_ae`` (calling from ``address``, without TLS) use ``service``?"""
    if service not in SERVICES:
        raise ValueError(f"unknown DIMSE service {service!r} (one of {', '.join(SERVICES)})")
    grant = await resolve(engine, Peer(calling_ae, address))
    return grant is not None and grant.may(service)


@dataclass(frozen=True)
class AeChange:
    """One edit of the allow-list: the entry before (None: added) and after (None: removed)."""

    ae_title: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None

    def audit_detail(self) -> dict[str, Any]:
        return {"ae": self.ae_title, "old": self.old, "new": self.new}


async def allow_ae(
    engine: AsyncEngine,
    ae_title: str,
    services: list[str],
    *,
    user: str | None = None,
    role: str | None = None,
    address: str | None = None,
    certificate: str | None = None,
    note: str = "",
    version: int | None = None,
    who: str = "",
) -> AeChange:
    """Allow an AE ``services`` as the account ``user``, or as an AE-only principal with
    ``role`` (exactly one of the two); replaces what the AE had. ``version``: the entry's
    version the caller read (0: not listed yet); VersionConflict when it has moved since."""
    title = _normalise(ae_title)
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown DIMSE service(s): {', '.join(sorted(unknown))}")
    if (user is None) == (role is None):
        raise ValueError("give the account the AE acts as (user) or a role for it, not both")
    async with engine.begin() as conn:
        if user is not None:
            effective = await conn.scalar(select(users.c.role).where(users.c.username == user))
            if effective is None:
                raise ValueError(f"no user {user!r}")
        elif role not in ROLES:
            raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        else:
            effective = role
        beyond = [s for s in services if PERMISSION[s] not in ROLES[effective]]
        if beyond:
            needs = ", ".join(f"{s} needs {PERMISSION[s]}" for s in beyond)
            raise ValueError(f"role {effective} may not use {', '.join(beyond)} ({needs})")
        values = {s: s in services for s in SERVICES} | {
            "principal": user if user is not None else AE_PRINCIPAL_PREFIX + title,
            "role": role,
            "address": normalise_address(address) if address else None,
            "certificate": normalise_certificate(certificate) if certificate else None,
            "note": note,
            "updated_at": time.time(),
            "updated_by": who,
        }
        old = await _entry(conn, title)
        check_version(old["version"] if old else None, version, f"AE {title}")
        await _write(conn, title, values, old)
        new = await _entry(conn, title)
    if title == ANY_AE:
        log.warning("DIMSE: every calling AE not listed by name may now use %s", services)
    return AeChange(title, old, new)


async def remove_ae(
    engine: AsyncEngine, ae_title: str, version: int | None = None
) -> AeChange | None:
    """Take the AE off the list; None when it is not on it."""
    title = _normalise(ae_title)
    async with engine.begin() as conn:
        old = await _entry(conn, title)
        if old is None:
            return None
        check_version(old["version"], version, f"AE {title}")
        removed = await conn.execute(
            delete(ae_permissions).where(
                ae_permissions.c.ae_title == title, ae_permissions.c.version == old["version"]
            )
        )
        if removed.rowcount == 0:
            raise VersionConflict(f"AE {title} changed while it was removed: reload and retry")
    return AeChange(title, old, None)


async def _write(
    conn: AsyncConnection, title: str, values: dict[str, Any], old: dict[str, Any] | None
) -> None:
    """Insert or update the entry, provided no other edit has come between (on PostgreSQL the
    row lock makes the second of two edits of one version find the version moved)."""
    if old is None:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    ae_permissions.insert().values(ae_title=title, version=1, **values)
                )
        except IntegrityError:
            raise VersionConflict(f"AE {title} was added meanwhile: reload and retry") from None
        return
    moved = await conn.execute(
        update(ae_permissions)
        .where(ae_permissions.c.ae_title == title, ae_permissions.c.version == old["version"])
        .values(version=old["version"] + 1, **values)
    )
    if moved.rowcount == 0:
        raise VersionConflict(f"AE {title} changed meanwhile: reload and retry")


async def _entry(conn: AsyncConnection, title: str) -> dict[str, Any] | None:
    """The entry as it may be shown and audited."""
    row = (
        await conn.execute(select(ae_permissions).where(ae_permissions.c.ae_title == title))
    ).first()
    if row is None:
        return None
    entry = dict(row._mapping)
    entry["services"] = [s for s in SERVICES if entry.pop(s)]
    return entry


async def list_ae(engine: AsyncEngine) -> list[dict]:
    """The entries, each with ``acts_as`` (the principal) and ``effective_role``."""
    entries = ae_permissions.outerjoin(users, users.c.username == ae_permissions.c.principal)
    stmt = (
        select(ae_permissions, users.c.role.label("user_role"))
        .select_from(entries)
        .order_by(ae_permissions.c.ae_title)
    )
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(stmt)]
    for row in rows:
        row["effective_role"] = row.pop("user_role") if row["role"] is None else row["role"]
        row["services"] = [s for s in SERVICES if row[s]]
    return rows


async def announce(engine: AsyncEngine) -> None:
    """Log the allow-list's state when the DIMSE port opens; loudly if "*" is on it."""
    entries = await list_ae(engine)
    named = [e for e in entries if e["ae_title"] != ANY_AE]
    log.info("DIMSE: %d calling AE title(s) allowed; any other AE gets C-ECHO only", len(named))
    for entry in entries:
        if entry["ae_title"] == ANY_AE:
            log.warning(
                "DIMSE: the allow-list has '*': EVERY calling AE may use %s as %s (%s); "
                "remove it with: tessera ae remove '*'",
                " ".join(entry["services"]) or "nothing beyond C-ECHO",
                entry["principal"],
                entry["effective_role"],
            )
