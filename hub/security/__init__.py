"""Users, roles, tokens, TLS, encryption at rest and the tamper-evident audit trail."""

from hub.security.accounts import Principal, actor_of, ensure_admin, issue_token, resolve_token
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
