"""Run the hub until interrupted."""

from __future__ import annotations

import asyncio
import gc
import signal
import ssl

from aiohttp import web

from hub.app import build_app
from hub.archive import Archive
from hub.config import Settings


async def start(settings: Settings, ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    archive = await Archive.open(settings, clear_temp=True)
    app = await build_app(settings, archive)
    app.on_cleanup.append(lambda _app: archive.close())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context, backlog=1024)
    await site.start()
    return runner


async def serve(settings: Settings, ssl_context: ssl.SSLContext | None = None, banner=None) -> int:
    runner = await start(settings, ssl_context)
    # What is loaded by now (modules, the application and its doors) lives as long as the
    # process. Left to the collector, every full collection walks it again: 0.1 s with the
    # event loop stalled, measured during a STOW of a 233 MB slide. Frozen, it is not walked.
    gc.collect()
    gc.freeze()
    scheme = "https" if ssl_context else "http"
    print(f"Tessera is running at {scheme}://{settings.host}:{settings.port}/", flush=True)
    if banner:
        banner()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0
