"""`tessera dose recompute`: estimate every recorded CT event with the current k table.

Building the parser imports nothing heavy; the database layer loads when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.config import Settings


def register(subparsers) -> None:
    dose = subparsers.add_parser("dose", help="the radiation dose registry")
    sub = dose.add_subparsers(title="dose commands", required=True)
    recompute = sub.add_parser(
        "recompute",
        help="estimate every recorded event with the current k table (dose k_table); events "
        "already estimated with it are left as they are",
    )
    # Also accept --data after the command; SUPPRESS keeps a --data given before it.
    recompute.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="data folder")
    recompute.set_defaults(func=cmd_recompute)


def cmd_recompute(args: argparse.Namespace) -> int:
    import asyncio

    from hub.cli import settings_from

    return asyncio.run(_recompute(settings_from(args)))


async def _recompute(settings: Settings) -> int:
    from hub.archive.index import make_engine
    from hub.archive.migrations.runner import prepare
    from hub.audited import audit_command
    from hub.dose.estimate import current_table, load_regions
    from hub.dose.registry import recompute

    table = current_table(settings.dose)  # an unreadable table stops here, before the index
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    try:
        await prepare(engine, "create")
        done = await recompute(engine, table, load_regions())
        detail = {"table_id": done.table_id, "events": done.events, "estimates": done.estimates}
        await audit_command(settings, engine, "dose.recompute", detail=detail)
    finally:
        await engine.dispose()
    print(
        f"{done.events} event(s) estimated with table {done.table_id} ({done.estimates} "
        f"estimate(s) added); {done.unchanged} already estimated with it, unchanged"
    )
    return 0
