"""Write a new revision from the difference between the tables and a database at the head.

``python -m hub.archive.migrations revision -m MESSAGE [--url URL] [--empty]``: without
``--url`` the database is a scratch SQLite file; either is upgraded to the current head first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from sqlalchemy import Connection

from hub.archive.index import make_engine
from hub.archive.migrations.runner import alembic_config, scripts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.archive.migrations", description=__doc__)
    sub = parser.add_subparsers(title="commands", required=True)
    rev = sub.add_parser("revision", help="write versions/NNNN_<message>.py")
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--url", help="compare with this database (an index URL, as for serve)")
    rev.add_argument("--empty", action="store_true", help="an empty revision to write by hand")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        url = args.url or f"sqlite+aiosqlite:///{Path(scratch) / 'head.sqlite'}"
        path = asyncio.run(write_revision(url, args.message, autogenerate=not args.empty))
    print(f"wrote {path}")
    return 0


async def write_revision(url: str, message: str, *, autogenerate: bool) -> str:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            # Revision by revision: a new index would get today's tables at once (runner._create),
            # and there would be nothing left to compare.
            await conn.run_sync(lambda sync: _upgrade_stepwise(sync))
        async with engine.connect() as conn:
            return await conn.run_sync(_revision, message, autogenerate)
    finally:
        await engine.dispose()


def _upgrade_stepwise(conn: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(conn), "head")


def _revision(conn: Connection, message: str, autogenerate: bool) -> str:
    from alembic import command

    script = command.revision(
        alembic_config(conn), message=message, autogenerate=autogenerate, rev_id=next_revision_id()
    )
    assert script is not None and not isinstance(script, list)
    return script.path


def next_revision_id() -> str:
    numbers = [int(s.revision) for s in scripts().walk_revisions() if s.revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


if __name__ == "__main__":
    sys.exit(main())
