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
primary holds the other end, so a reader never outlives it, even when the primary is killed. The
watch on that pipe starts before anything else, so a primary that dies while the reader is still
importing or building its application (seconds on a busy machine) ends it at once too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from aiohttp import hdrs, web

from hub.config import Settings
from hub.serve.eventloop import run

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


class PrimaryLink:
    """Our standard input: the primary writes its settings there as one JSON line (not in the
    environment: they hold secrets), then holds it open for as long as it runs."""

    def __init__(self) -> None:
        self._settings_line = b""
        self._settings_read = threading.Event()
        self._lock = threading.Lock()
        self._gone = False
        self._on_gone: Callable[[], None] | None = None
        threading.Thread(target=self._watch, name="primary-watch", daemon=True).start()

    def _watch(self) -> None:
        self._settings_line = sys.stdin.buffer.readline()
        self._settings_read.set()
        sys.stdin.buffer.read()  # returns at end of file: the primary has exited
        with self._lock:
            self._gone = True
            on_gone = self._on_gone
        if on_gone is None:
            # Not serving yet, so nothing to finish: exit now, even from the middle of an import.
            os._exit(0)
        on_gone()

    async def settings(self) -> Settings:
        await asyncio.to_thread(self._settings_read.wait)
        return Settings.from_json(self._settings_line.decode())

    def when_gone(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Call ``callback`` in ``loop`` once the primary has exited (at once if it has), to stop
        a reader that serves; until this is called, the primary's exit ends the process."""
        with self._lock:
            if self._gone:
                loop.call_soon(callback)
            else:
                self._on_gone = lambda: loop.call_soon_threadsafe(callback)


async def serve_reader(
    primary: PrimaryLink, listener: socket.socket, upstream_path: str, tls: list[Path] | None
) -> int:
    runner = await _start(primary, listener, upstream_path, tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    primary.when_gone(loop, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


async def _start(
    primary: PrimaryLink, listener: socket.socket, upstream_path: str, tls: list[Path] | None
) -> web.AppRunner:
    # Imported here, once the primary is watched: these imports take seconds on a busy machine.
    from hub import security
    from hub.app import build_app
    from hub.serve import connlimits
    from hub.serve.proxy import Upstream

    settings = await primary.settings()
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
    return runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.serve.readers", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the shared listening socket")
    parser.add_argument("--upstream", required=True, help="the primary's Unix socket")
    parser.add_argument("--tls", type=Path, nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args(argv)
    primary = PrimaryLink()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s reader %(name)s: %(message)s"
    )
    listener = socket.socket(fileno=args.fd)
    return run(serve_reader(primary, listener, args.upstream, args.tls))


if __name__ == "__main__":
    sys.exit(main())
