"""Security tables, on the archive's metadata so they live in the archive's database (and its
migrations, ``hub.archive.migrations``)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from hub.archive.index import metadata

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("password_hash", String(256), nullable=True),  # None: token-only service account
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    # Set by someone else (a generated one-time password): the next sign-in must replace it.
    Column("password_temporary", Boolean, nullable=False, default=False),
)

# Bearer tokens and browser sessions. Only the sha256 of the secret is kept: the secrets are
# 256-bit random values, so a fast hash is enough (no password stretching needed).
tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_fk", ForeignKey("users.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # "api" | "session"
    Column("label", String(), nullable=False, default=""),
    Column("scopes", Text, nullable=True),  # space-separated permissions; None: the role's all
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)
Index("ix_tokens_user", tokens.c.user_fk)

# Hash-chained, HMAC-keyed audit trail (fields after IHE ATNA / RFC 3881).
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("who", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("patient", String(), nullable=True),
    Column("study", String(), nullable=True),
    Column("source", String(), nullable=True),
    Column("detail", Text, nullable=True),
    Column("mac", String(64), nullable=False),
)
Index("ix_audit_action", audit_log.c.action, audit_log.c.seq)  # the newest record of an action
# Searching the trail by who, patient, study or time, newest first.
Index("ix_audit_who", audit_log.c.who, audit_log.c.seq)
Index("ix_audit_patient", audit_log.c.patient, audit_log.c.seq)
Index("ix_audit_study", audit_log.c.study, audit_log.c.seq)
Index("ix_audit_at", audit_log.c.at)

# Login throttle counters (hub.security.ratelimit): one row per account, client address,
# account-at-address and known place; ``level`` leaks over time, ``next_at`` is the delay.
login_throttle = Table(
    "login_throttle",
    metadata,
    Column("key", String(256), primary_key=True),
    Column("level", Float, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("updated", Float, nullable=False),
)
Index("ix_login_throttle_updated", login_throttle.c.updated)

# DIMSE allow-list: which calling AE titles may use which services, and as whom. An AE not
# listed gets C-ECHO only; the title "*" stands for every AE not listed by name.
ae_permissions = Table(
    "ae_permissions",
    metadata,
    Column("ae_title", String(16), primary_key=True),
    # The user name the AE acts as: an account in ``users`` (role NULL: that account's role,
    # read at each association) or "ae:<title>" for an AE-only principal with ``role``.
    Column("principal", String(128), nullable=False),
    Column("role", String(32), nullable=True),
    Column("address", String(64), nullable=True),  # source address or network (CIDR)
    Column("certificate", String(), nullable=True),  # "sha256:<hex>" or an RFC 4514 subject
    Column("store", Boolean, nullable=False, default=False),
    Column("find", Boolean, nullable=False, default=False),
    Column("move", Boolean, nullable=False, default=False),
    Column("get", Boolean, nullable=False, default=False),
    Column("worklist", Boolean, nullable=False, default=False),
    Column("note", String(), nullable=False, default=""),
    Column("version", Integer, nullable=False, default=1),  # one more at each change
    Column("updated_at", Float, nullable=False, default=0.0),
    Column("updated_by", String(128), nullable=False, default=""),
)

SECURITY_TABLES = [users, tokens, audit_log, login_throttle, ae_permissions]
