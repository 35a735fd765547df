"""Reader processes: more cores for DICOMweb reads (``tessera serve --workers N``).

One Python process answers about 8,000 frame requests a second on one core. With ``--workers N``
the primary process (the full hub: ingest, DIMSE, forwarding, jobs, telehealth, audit
housekeeping) shares its listening socket with N-1 reader processes. Whichever process accepts a
connection answers DICOMweb reads, pages and static files itself, under the same access gate and
read audit; anything else it relays to the primary (``hub.proxy``). The index and the blob store
are the shared state (ARCHITECTURE rule 6); the caches in each process are for immutable data.

A reader runs until its standard input closes: the primary holds the other end, so a reader
never outlives it, even when the primary is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from aiohttp import hdrs, web

import web.routes as web_routes
from hub import connlimits, dicomweb, errors, security
from hub.app import close_archive
from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.archive import Archive
from hub.config import Settings
from hub.eventloop import run
from hub.forwarded import forwarded_middleware
from hub.proxy import Upstream, proxy_middleware
from hub.stores import open_store

SETTINGS_ENV = "TESSERA_READER_SETTINGS"
SERVED_HERE = ("dicomweb.read.", "page.", "public.static.")
READ_METHODS = frozenset({"GET", "HEAD"})


def served_here(request: web.Request) -> bool:
    """Reads a reader answers itself; the rest (and unknown paths) go to the primary."""
    if request.method not in READ_METHODS or hdrs.UPGRADE in request.headers:
        return False
    match = request.match_info
    if match.http_exception is not None:
        return False
    return (match.route.name or "").startswith(SERVED_HERE)


async def build_reader_app(settings: Settings, upstream: Upstream) -> web.Application:
    archive = await Archive.open(
        settings, store=open_store(settings), schema="require"
    )  # the primary migrated
    app = web.Application(client_max_size=1024**2)
    app[SETTINGS_KEY] = settings
    app[ARCHIVE_KEY] = archive
    errors.install(app)
    connlimits.install(app, settings)
    if settings.trusted_proxies:
        app.middlewares.append(forwarded_middleware(settings.trusted_proxies))
    app.middlewares.append(proxy_middleware(upstream, served_here))
    security.setup(app, primary=False)
    dicomweb.setup(app)
    web_routes.setup(app)
    app.on_cleanup.append(close_archive)
    return app


def settings_to_env(settings: Settings) -> str:
    fields = dataclasses.asdict(settings)
    fields["data_dir"] = str(settings.data_dir)
    return json.dumps(fields)


def settings_from_env() -> Settings:
    fields = json.loads(os.environ[SETTINGS_ENV])
    fields["data_dir"] = Path(fields["data_dir"])
    return Settings(**fields)


async def serve_reader(
    settings: Settings, listener: socket.socket, upstream_path: str, tls: list[Path] | None
) -> int:
    upstream = Upstream(upstream_path)
    await upstream.start()
    app = await build_reader_app(settings, upstream)
    app.on_cleanup.append(lambda _app: upstream.close())
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, **connlimits.runner_options(settings)
    )
    await runner.setup()
    ssl_context = security.http_ssl_context(*tls) if tls else None
    guard = app[connlimits.GUARD_KEY]
    await connlimits.GuardedSite(runner, listener, guard, ssl_context=ssl_context).start()
    gc.collect()
    gc.freeze()  # see hub.server.serve
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _on_stdin_closed(loop, stop)
    await stop.wait()
    await runner.cleanup()
    return 0


def _on_stdin_closed(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def watch() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, name="primary-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.readers", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the shared listening socket")
    parser.add_argument("--upstream", required=True, help="the primary's Unix socket")
    parser.add_argument("--tls", type=Path, nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s reader %(name)s: %(message)s"
    )
    listener = socket.socket(fileno=args.fd)
    return run(serve_reader(settings_from_env(), listener, args.upstream, args.tls))


if __name__ == "__main__":
    sys.exit(main())
