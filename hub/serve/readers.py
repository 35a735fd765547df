"""Reader processes: more cores for DICOMweb reads (``tessera serve --workers N``).

One Python process answers about 8,000 frame requests a second on one core. With ``--workers N``
the primary process (the full hub: ingest, DIMSE, forwarding, jobs, telehealth, audit
housekeeping) shares its listening socket with N-1 reader processes. Whichever process accepts a
connection answers DICOMweb reads, pages and static files itself, under the same access gate and
read audit; anything else it relays to the primary (``hub.serve.proxy``). The index and the blob
store are the shared state (ARCHITECTURE rule 6); the caches in each process are for immutable
data.

The reader's Application is built by the composition root (``hub.app.build_app`` with an
upstream). It reads its settings from its standard input, then runs until that closes: the
primary holds the other end, so a reader never outlives it, even when the primary is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import socket
import sys
import threading
from pathlib import Path

from aiohttp import hdrs, web

from hub import security
from hub.app import build_app
from hub.config import Settings
from hub.serve import connlimits
from hub.serve.eventloop import run
from hub.serve.proxy import Upstream

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


async def read_settings() -> Settings:
    """The primary writes its settings as one JSON line on our standard input (not in the
    environment: they hold secrets)."""
    line = await asyncio.to_thread(sys.stdin.buffer.readline)
    return Settings.from_json(line.decode())


async def serve_reader(listener: socket.socket, upstream_path: str, tls: list[Path] | None) -> int:
    settings = await read_settings()
    upstream = Upstream(upstream_path)
    await upstream.start()
    app = await build_app(settings, upstream=upstream)
    app.on_cleanup.append(lambda _app: upstream.close())
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, **connlimits.runner_options(settings)
    )
    await runner.setup()
    ssl_context = security.http_ssl_context(*tls) if tls else None
    guard = app[connlimits.GUARD_KEY]
    await connlimits.GuardedSite(runner, listener, guard, ssl_context=ssl_context).start()
    gc.collect()
    gc.freeze()  # see hub.serve.server.serve
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
    parser = argparse.ArgumentParser(prog="python -m hub.serve.readers", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the shared listening socket")
    parser.add_argument("--upstream", required=True, help="the primary's Unix socket")
    parser.add_argument("--tls", type=Path, nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s reader %(name)s: %(message)s"
    )
    listener = socket.socket(fileno=args.fd)
    return run(serve_reader(listener, args.upstream, args.tls))


if __name__ == "__main__":
    sys.exit(main())
