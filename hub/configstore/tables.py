"""The configuration tables, part of the archive index (``hub.archive.index.metadata``).

An entry is one named piece of a scope's configuration (a forwarding target, a routing rule),
stored as JSON. Every change to a scope bumps its revision in the same transaction, so a process
tells that its copy is stale by reading one row.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, String, Table, Text

from hub.archive.index import metadata

config_entries = Table(
    "config_entries",
    metadata,
    Column("kind", String(64), primary_key=True),  # "forward.target", "forward.rule", ...
    Column("name", String(128), primary_key=True),
    Column("position", Integer, nullable=False, default=0),  # order within the kind
    Column("spec", Text, nullable=False),  # JSON
    Column("version", Integer, nullable=False),  # 1 when created, +1 on every change
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(128), nullable=False),
)

config_scopes = Table(
    "config_scopes",
    metadata,
    Column("scope", String(64), primary_key=True),  # "forward"
    Column("revision", Integer, nullable=False),  # +1 on every change of any entry in it
    Column("seeded_at", Float, nullable=False),  # when the settings first filled it
    Column("updated_at", Float, nullable=False),
)
