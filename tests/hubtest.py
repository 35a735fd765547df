"""Helpers for tests that run the whole hub: free ports and a served app with a signed-in client.

Kept out of conftest.py so that test modules can import it by a name no other folder uses.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hub.app import build_app
from hub.app_keys import ARCHIVE_KEY
from hub.archive import Archive
from hub.config import Settings
from hub.serve import connlimits
from hub.serve.workers import listening_socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class HubServer:
    url: str
    archive: Archive
    settings: Settings
    app: web.Application
    admin_headers: dict[str, str] = field(default_factory=dict)

    def session(self, **kwargs) -> aiohttp.ClientSession:
        """An HTTP client signed in as an administrator."""
        return aiohttp.ClientSession(headers=self.admin_headers, **kwargs)


@contextlib.asynccontextmanager
async def running_hub(settings: Settings) -> AsyncIterator[HubServer]:
    """The whole hub served on 127.0.0.1 at settings.port until the block ends."""
    app = await build_app(settings)
    runner = web.AppRunner(app, access_log=None, **connlimits.runner_options(settings))
    await runner.setup()
    listener = listening_socket("127.0.0.1", settings.port)
    await connlimits.GuardedSite(runner, listener, app[connlimits.GUARD_KEY]).start()
    server = HubServer(f"http://127.0.0.1:{settings.port}", app[ARCHIVE_KEY], settings, app)
    server.admin_headers = await _admin_headers(server.archive)
    try:
        yield server
    finally:
        await runner.cleanup()


async def _admin_headers(archive: Archive) -> dict[str, str]:
    from hub.security.accounts import create_user, issue_token

    await create_user(archive.engine, "test-admin", "admin", None)
    _, secret = await issue_token(archive.engine, "test-admin", label="tests")
    return {"Authorization": f"Bearer {secret}"}


def dciodvfy_errors(path: Path) -> list[str] | None:
    """The Error lines dciodvfy reports for a file; None when dicom3tools is not installed."""
    if shutil.which("dciodvfy") is None:
        return None
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in result.stderr.splitlines() if line.startswith("Error")]


def assert_dciodvfy_clean(paths: Iterable[Path]) -> None:
    """dciodvfy reports no error in any of the files (the test is skipped without dicom3tools)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    for path in paths:
        errors = dciodvfy_errors(path)
        assert errors == [], f"{path.name}: {errors}"


class HubProcess:
    """``tessera serve`` in a subprocess (for what one process must show: memory, sockets)."""

    def __init__(self, data: Path, port: int, *args: str, env: dict[str, str] | None = None):
        import os
        import sys

        command = [sys.executable, "-m", "hub.cli", "serve", "--data", str(data)]
        command += ["--port", str(port), *args]
        self.url = f"http://127.0.0.1:{port}"
        self.data = data
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        said = []
        for line in self.proc.stdout:
            if "Tessera is running" in line:
                break
            said.append(line)
        else:
            last = "".join(said[-20:])
            raise RuntimeError(f"the hub did not start (exit {self.proc.wait()}):\n{last}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def two_nodes(
    root: Path, database_url: str | None, extra: str
) -> Iterator[tuple[HubProcess, HubProcess]]:
    """Nodes ``node-a`` and ``node-b``: two ``tessera serve`` on one PostgreSQL index, each with
    a data folder of its own under ``root`` and ``extra`` as TESSERA_EXTRA (the test is skipped
    on SQLite)."""
    if not database_url:
        pytest.skip(
            "nodes share an index on PostgreSQL (tests/with_postgres.sh); SQLite is one node's"
        )
    started: list[HubProcess] = []
    try:
        for name in ("a", "b"):  # one after the other: the first creates the schema
            env = {"TESSERA_NODE_ID": f"node-{name}", "TESSERA_EXTRA": extra}
            node = HubProcess(root / name, free_port(), env=env)
            started.append(node)
            threading.Thread(target=node.proc.stdout.read, daemon=True).start()  # keep it flowing
        yield started[0], started[1]
    finally:
        for node in started:
            node.stop()


def tessera(data: Path, *args: str) -> str:
    """Run a ``tessera`` command on a data folder; its standard output."""
    import sys

    command = [sys.executable, "-m", "hub.cli", *args, "--data", str(data)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def bearer_for(data: Path, user: str, role: str) -> dict[str, str]:
    tessera(data, "user", "add", user, "--role", role, "--no-password")
    return {"Authorization": f"Bearer {tessera(data, 'user', 'token', user).strip()}"}
