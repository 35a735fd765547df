"""Schema migrations of the index (Alembic); ``runner.prepare`` applies them when the index opens.

Adding a column, a table or an index is one new file in ``versions/``:

1. change the table in its package (``hub/archive/index.py``, ``hub/security/tables.py``, ...);
   a new table is also listed in ``schema.py``;
2. write the revision from the difference, against a scratch SQLite database at the current
   head (or ``--url postgresql://...`` for a database of your own)::

       PYTHONPATH=$PWD python -m hub.archive.migrations revision -m "patients: other ids"

3. read ``versions/NNNN_<message>.py``, keep what it should do (autogenerate does not see
   renames, and server defaults for existing rows are yours to add), and run
   ``tests/archive/test_migrations.py``: it checks that the revisions end in exactly the
   schema the tables declare, on SQLite and PostgreSQL.

Revisions are numbered 0001, 0002, ... in one line (each ``down_revision`` the one before).
On SQLite they run in batch mode, so ``op.batch_alter_table`` works for changes SQLite's ALTER
TABLE cannot make. ``tessera db current`` shows an index's revision, ``tessera db upgrade``
moves it to the head.
"""
