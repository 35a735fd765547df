"""Users, roles, tokens, TLS, encryption at rest and the tamper-evident audit trail.

The names below load on first use (PEP 562), so that a submodule such as the command line's
``hub.security.cli`` can be imported without password hashing, aiohttp and the database layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.lazy import lazy_exports

if TYPE_CHECKING:
    from hub.security.accounts import (
        Principal,
        actor_of,
        ensure_admin,
        issue_token,
        resolve_token,
    )
    from hub.security.audit_trail import archive_subscriber, audit
    from hub.security.dimse_acl import ae_permitted
    from hub.security.middleware import principal, security_middleware
    from hub.security.setup import setup
    from hub.security.tls import (
        dicom_tls_client_context,
        dicom_tls_context,
        http_ssl_context,
        make_self_signed,
    )

_HOMES = {
    "Principal": "accounts",
    "actor_of": "accounts",
    "ensure_admin": "accounts",
    "issue_token": "accounts",
    "resolve_token": "accounts",
    "archive_subscriber": "audit_trail",
    "audit": "audit_trail",
    "ae_permitted": "dimse_acl",
    "principal": "middleware",
    "security_middleware": "middleware",
    "setup": "setup",
    "dicom_tls_client_context": "tls",
    "dicom_tls_context": "tls",
    "http_ssl_context": "tls",
    "make_self_signed": "tls",
}

__all__ = [
    "Principal",
    "actor_of",
    "ae_permitted",
    "archive_subscriber",
    "audit",
    "dicom_tls_client_context",
    "dicom_tls_context",
    "ensure_admin",
    "http_ssl_context",
    "issue_token",
    "make_self_signed",
    "principal",
    "resolve_token",
    "security_middleware",
    "setup",
]

__getattr__ = lazy_exports(__name__, _HOMES)
