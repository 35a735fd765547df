"""What the subcommands that work on an existing hub's index share: its settings, an engine at
the current schema for the command's run, and what the command makes of that engine (a queue,
a configuration scope). Importing it imports nothing heavy."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hub.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

Handler = Callable[[argparse.Namespace, Settings, Any], Awaitable[int]]
Port = Callable[["AsyncEngine", Settings], Any]


def _engine_itself(engine: AsyncEngine, _settings: Settings) -> AsyncEngine:
    return engine


def index_command(handler: Handler, port: Port = _engine_itself) -> Callable[..., int]:
    """The ``func`` of a subcommand: 2 when there is no index to work on (saying why), else
    what ``handler`` returns, given ``port`` of the engine."""

    def run(args: argparse.Namespace) -> int:
        import asyncio

        from hub.cli import existing_settings

        settings = existing_settings(args)
        if settings is None:
            return 2
        return asyncio.run(_on_index(handler, port, args, settings))

    return run


async def _on_index(handler: Handler, port: Port, args: argparse.Namespace, settings: Settings):
    from hub.archive.index import create_schema, make_engine

    engine = make_engine(settings.db_url)
    try:
        await create_schema(engine)
        return await handler(args, settings, port(engine, settings))
    finally:
        await engine.dispose()
