"""`tessera db current` and `tessera db upgrade`: the index's schema revision."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    db = subparsers.add_parser("db", help="the index's schema revision: show it, upgrade it")
    sub = db.add_subparsers(title="db commands", required=True)
    current = sub.add_parser(
        "current", help="print the index's revision (exit 1 unless it is the one this code needs)"
    )
    current.set_defaults(func=cmd_current)
    upgrade = sub.add_parser("upgrade", help="migrate the index to the revision this code needs")
    upgrade.set_defaults(func=cmd_upgrade)
    for command in (current, upgrade):
        # Also accept --data after the command; SUPPRESS keeps a --data given before it.
        command.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="data folder")


def cmd_current(args: argparse.Namespace) -> int:
    from hub.archive.index import make_engine
    from hub.archive.migrations.runner import read_state

    settings = _settings(args)
    if settings.database_url is None and not (settings.data_dir / "index.sqlite").exists():
        print(f"no index in {settings.data_dir}")
        return 1

    async def run() -> int:
        engine = make_engine(settings.db_url)
        try:
            state = await read_state(engine)
        finally:
            await engine.dispose()
        if state.up_to_date:
            print(f"{state.current} (head)")
        elif not state.known:
            print(
                f"{state.current} (unknown here, a newer release wrote it; this one needs {state.head})"
            )
        else:
            print(f"{state.describe()} (this Tessera needs {state.head}: run `tessera db upgrade`)")
        return 0 if state.up_to_date else 1

    import asyncio

    return asyncio.run(run())


def cmd_upgrade(args: argparse.Namespace) -> int:
    from hub.archive.index import make_engine
    from hub.archive.migrations.runner import prepare

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> int:
        engine = make_engine(settings.db_url)
        try:
            found = await prepare(engine, "upgrade")
        finally:
            await engine.dispose()
        if found.up_to_date:
            print(f"the index is at {found.head} (head) already")
        else:
            print(f"upgraded the index from {found.describe()} to {found.head} (head)")
        return 0

    import asyncio

    return asyncio.run(run())


def _settings(args: argparse.Namespace):
    from hub.config import Settings

    return Settings.from_env(data_dir=getattr(args, "data", None))
