"""The primary's side of ``--workers``: the shared socket and the reader processes it supervises."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from hub.config import Settings
from hub.tasks import cancel_and_wait

log = logging.getLogger(__name__)

RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_SECONDS = 60.0  # a reader that ran this long starts again at the shortest delay
STOP_SECONDS = 10.0


def listening_socket(host: str, port: int) -> socket.socket:
    """The public socket, bound here and inherited by the readers; port 0 works too."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class ReaderPool:
    """Keeps ``count`` reader processes running on ``listener`` until closed."""

    def __init__(
        self,
        count: int,
        settings: Settings,
        listener: socket.socket,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.count = count
        self.settings = settings
        self.listener = listener
        self.tls = tls
        self._dir = tempfile.mkdtemp(prefix="tessera-")  # 0700: only this user may connect
        self.upstream_path = os.path.join(self._dir, "primary.sock")
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task] = []
        self._closing = False

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.returncode is None]

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._keep_running(n), name=f"reader-{n}")
            for n in range(self.count)
        ]

    async def close(self) -> None:
        self._closing = True
        for proc in self._procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self._procs.values():
            try:
                await asyncio.wait_for(proc.wait(), STOP_SECONDS)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for task in self._tasks:
            await cancel_and_wait(task)
        shutil.rmtree(self._dir, ignore_errors=True)

    async def _keep_running(self, n: int) -> None:
        failures = 0
        while not self._closing:
            started = time.monotonic()
            proc = await self._spawn()
            self._procs[n] = proc
            code = await proc.wait()
            if self._closing:
                return
            failures = 0 if time.monotonic() - started > STABLE_SECONDS else failures + 1
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            log.warning(
                "reader process %d exited (%s); starting it again in %.0f s", n, code, delay
            )
            await asyncio.sleep(delay)

    async def _spawn(self) -> asyncio.subprocess.Process:
        fd = self.listener.fileno()
        command = [sys.executable, "-m", "hub.serve.readers", "--fd", str(fd)]
        command += ["--upstream", self.upstream_path]
        if self.tls:
            command += ["--tls", *map(str, self.tls)]
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, pass_fds=(fd,)
        )
        assert proc.stdin is not None
        proc.stdin.write(self.settings.to_json().encode() + b"\n")  # see readers.read_settings
        return proc
