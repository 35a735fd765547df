"""Who may do what: roles, permissions and the route-name rules (deny by default).

Every route carries a name ``<area>.<action>[.<detail>]``. The permission a route needs is the
longest rule prefix of its name; a name no rule covers is refused, whoever asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

# Route name prefix -> permission it needs. ``None``: public, no login at all.
# ``AUTHENTICATED``: any logged-in principal whatever its role.
AUTHENTICATED = "authenticated"
ROUTE_RULES: dict[str, str | None] = {
    "public": None,  # sign-in, static files, the conformance statement and its page
    "account": AUTHENTICATED,  # the caller's own session: /api/me
    "describe": AUTHENTICATED,  # the API's own description: /api/openapi.json
    "page": AUTHENTICATED,  # HTML pages for every role (the others end in ".page")
    "dicomweb.read": "dicomweb.read",
    "dicomweb.write": "dicomweb.write",
    "annotations.write": "annotations.write",
    "ai.run": "ai.run",  # run a model on a slide now: its results are stored in the study
    "ai.read": "ai.read",  # the models, and the provenance of their reports
    "slides.upload": "slides.upload",
    "jobs.read": "jobs.read",
    "worklist.read": "worklist.read",
    "worklist.write": "worklist.write",
    "forward.read": "forward.read",
    "forward.admin": "forward.admin",
    "telehealth.start": "telehealth.start",
    "telehealth.join": "telehealth.join",
    "telehealth.signal": "telehealth.signal",
    "telehealth.capture": "telehealth.capture",
    "dose.read": "dose.read",
    "dose.admin": "dose.admin",
    "admin.metrics": "admin.metrics",  # /metrics: a scraper's token can have this scope alone
    "admin.system": "admin",  # the hub's state: versions, storage, queues, recent errors
    "admin.peers": "admin",  # the DIMSE peers (C-MOVE destinations): list, edit, C-ECHO
    "admin.patients": "admin",  # patient updates and merges from the RIS: list, revert
    "admin": "admin",
}

ALL_PERMISSIONS = frozenset(p for p in ROUTE_RULES.values() if p and p != AUTHENTICATED)

ROLES: dict[str, frozenset[str]] = {
    "admin": ALL_PERMISSIONS,
    "pathologist": frozenset(
        {"dicomweb.read", "jobs.read", "annotations.write", "ai.run", "ai.read"}
    ),
    "specialist": frozenset(
        {"telehealth.join", "telehealth.signal", "telehealth.capture", "dicomweb.read"}
    ),
    "clinic": frozenset(
        {
            "slides.upload",
            "dicomweb.write",
            "dicomweb.read",
            "jobs.read",
            "telehealth.start",
            "telehealth.signal",
            "telehealth.capture",
            "worklist.read",
        }
    ),
    "integration": frozenset({"dicomweb.read", "dicomweb.write", "ai.read"}),
}

# What a role may read through dicomweb.read beyond the route check. Enforced by the
# DICOMweb handlers through ``hub.security.visibility``.
READ_SCOPE: dict[str, str] = {
    "admin": "all",
    "pathologist": "all",
    "integration": "all",
    "specialist": "modality:US",
    "clinic": "own",  # objects this user (or its clinic account) uploaded
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    permission: str | None  # what the route needs (None for public)
    reason: str


@lru_cache(maxsize=1024)
def rule_for(route_name: str | None) -> tuple[bool, str | None]:
    """(known, permission) for a route name: the longest matching rule prefix."""
    if not route_name:
        return False, None
    parts = route_name.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in ROUTE_RULES:
            return True, ROUTE_RULES[prefix]
    return False, None


def is_public(route_name: str | None) -> bool:
    known, permission = rule_for(route_name)
    return known and permission is None


@lru_cache(maxsize=4096)
def decide(route_name: str | None, role: str | None, scopes: frozenset[str] | None) -> Decision:
    """May a principal with ``role`` (and token ``scopes``, None = unrestricted) use the route?"""
    known, permission = rule_for(route_name)
    if not known:
        return Decision(False, None, f"no access rule for route {route_name!r}")
    if permission is None:
        return Decision(True, None, "public")
    if role is None:
        return Decision(False, permission, "not authenticated")
    granted = ROLES.get(role, frozenset())
    if permission == AUTHENTICATED:
        return Decision(role in ROLES, permission, "authenticated")
    if permission not in granted:
        return Decision(False, permission, f"role {role!r} lacks {permission}")
    if scopes is not None and permission not in scopes:
        return Decision(False, permission, f"token scope lacks {permission}")
    return Decision(True, permission, "granted")


def validate_scopes(role: str, scopes: list[str] | None) -> frozenset[str] | None:
    """Token scopes must be a subset of what the role has; raises ValueError otherwise."""
    if scopes is None:
        return None
    wanted = frozenset(scopes)
    unknown = wanted - ALL_PERMISSIONS
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}")
    beyond = wanted - ROLES[role]
    if beyond:
        raise ValueError(f"role {role} does not have: {', '.join(sorted(beyond))}")
    return wanted
