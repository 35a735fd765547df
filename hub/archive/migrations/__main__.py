"""Write a new revision from the difference between the tables and a database at the head.

``python -m hub.archive.migrations revision -m MESSAGE [--url URL] [--empty]``: without
``--url`` the database is a scratch SQLite file upgraded to the current head first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine

from hub.archive.migrations.runner import alembic_config, scripts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.archive.migrations", description=__doc__)
    sub = parser.add_subparsers(title="commands", required=True)
    rev = sub.add_parser("revision", help="write versions/NNNN_<message>.py")
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--url", help="compare with this database (a synchronous SQLAlchemy URL)")
    rev.add_argument("--empty", action="store_true", help="an empty revision to write by hand")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        url = args.url or f"sqlite:///{Path(scratch) / 'head.sqlite'}"
        path = write_revision(url, args.message, autogenerate=not args.empty)
    print(f"wrote {path}")
    return 0


def write_revision(url: str, message: str, *, autogenerate: bool) -> str:
    from alembic import command

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.begin() as conn:
            script = command.revision(
                alembic_config(conn),
                message=message,
                autogenerate=autogenerate,
                rev_id=next_revision_id(),
            )
    finally:
        engine.dispose()
    assert script is not None and not isinstance(script, list)
    return script.path


def next_revision_id() -> str:
    numbers = [int(s.revision) for s in scripts().walk_revisions() if s.revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


if __name__ == "__main__":
    sys.exit(main())
