"""Schema migrations of the index (Alembic); ``runner.prepare`` applies them when the index opens.

Adding a column, a table or an index is one new file in ``versions/``:

1. change the table in its package (``hub/archive/index.py``, ``hub/security/tables.py``, ...);
   a new table is also listed in ``schema.py``;
2. from the repository root, write the revision from the difference between the tables and a
   scratch SQLite database upgraded to the current head (``--url postgresql+asyncpg://...``
   compares with a database of your own instead, upgrading it first)::

       PYTHONPATH=$PWD .venv/bin/python -m hub.archive.migrations revision -m "patients: other ids"

3. read ``versions/NNNN_patients_other_ids.py`` (``ruff format`` it) and keep what it should do:
   autogenerate does not see renames, and a new NOT NULL column needs a ``server_default`` for
   the rows already there. Then run ``tests/archive/test_migrations.py`` (and
   ``make test-postgres``): it upgrades the fixture index and checks that the revisions end in
   exactly the schema the tables declare.

Revisions are numbered 0001, 0002, ... in one line (each ``down_revision`` the one before).
On SQLite they run in batch mode, so ``op.batch_alter_table`` works for changes SQLite's ALTER
TABLE cannot make. ``tessera db current`` shows an index's revision, ``tessera db upgrade``
moves it to the head.
"""
