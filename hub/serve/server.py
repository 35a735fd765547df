"""Run the hub until interrupted."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

from aiohttp import web

from hub.app import build_app, open_archive, start_duties
from hub.config import Settings
from hub.security.tls import http_ssl_context
from hub.serve import connlimits
from hub.serve.workers import ReaderPool, listening_socket

log = logging.getLogger(__name__)


class Running:
    """The started hub: its aiohttp runner and, with ``workers > 1``, the reader processes."""

    def __init__(self, runner: web.AppRunner, readers: ReaderPool | None) -> None:
        self.runner, self.readers = runner, readers

    async def stop(self) -> None:
        if self.readers is not None:
            await self.readers.close()
        await self.runner.cleanup()


async def start(
    settings: Settings, tls: tuple[Path, Path] | None = None, *, upgrade: bool = True
) -> Running:
    """Without ``upgrade``, an index at an older schema revision is refused (``SchemaError``)."""
    schema = "upgrade" if upgrade else "create"
    archive = await open_archive(settings, schema=schema, clear_temp=True)
    several = settings.workers > 1
    app = await build_app(settings, archive, relayed=several)
    duties = await start_duties(settings, archive)
    for keeper in duties:
        app.on_cleanup.append(lambda _app, keeper=keeper: keeper.stop())
    app.on_cleanup.append(lambda _app: archive.close())
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, **connlimits.runner_options(settings)
    )
    await runner.setup()
    ssl_context = http_ssl_context(*tls) if tls else None
    listener = listening_socket(settings.host, settings.port)
    settings.port = listener.getsockname()[1]
    public = connlimits.GuardedSite(
        runner, listener, app[connlimits.GUARD_KEY], ssl_context=ssl_context
    )
    if not several:
        await public.start()
        return Running(runner, None)
    readers = ReaderPool(settings.workers - 1, settings, listener, tls)
    await web.UnixSite(runner, readers.upstream_path).start()
    await public.start()
    await readers.start()
    return Running(runner, readers)


async def serve(
    settings: Settings, tls: tuple[Path, Path] | None = None, banner=None, *, upgrade: bool = True
) -> int:
    running = await start(settings, tls, upgrade=upgrade)
    # What is loaded by now (modules, the application and its doors) lives as long as the
    # process. Left to the collector, every full collection walks it again: 0.1 s with the
    # event loop stalled, measured during a STOW of a 233 MB slide. Frozen, it is not walked.
    gc.collect()
    gc.freeze()
    scheme = "https" if tls else "http"
    print(f"Tessera is running at {scheme}://{settings.host}:{settings.port}/", flush=True)
    if settings.workers > 1:
        print(f"({settings.workers} processes answer requests)", flush=True)
    if banner:
        banner()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()
    return 0
