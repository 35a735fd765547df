"""Alembic's environment: run by ``hub.archive.migrations.runner`` on a connection it passes in.

There is no alembic.ini and no URL here: the runner (and ``python -m hub.archive.migrations``)
hand over an open synchronous connection in ``config.attributes["connection"]``, inside the
transaction that holds the migration lock.
"""

from __future__ import annotations

from alembic import context

from hub.archive.migrations.schema import compare_type, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the migrations run through hub.archive.migrations.runner or "
        "`python -m hub.archive.migrations`, which pass a connection"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters a table by copying it; batch mode does that for later revisions.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=compare_type,
)
with context.begin_transaction():
    context.run_migrations()
