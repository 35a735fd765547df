"""`tessera serve --workers 2` as an operator runs it: two processes, supervised."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hubtest import free_port

REPO = Path(__file__).resolve().parents[2]


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(p) for p in text.split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Hub:
    def __init__(self, data: Path, port: int) -> None:
        command = [sys.executable, "-m", "hub.cli", "serve", "--data", str(data)]
        command += ["--port", str(port), "--workers", "2"]
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            _wait_for(lambda: "Tessera is running" in self.proc.stdout.readline(), 60, "the start")
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def readers(self) -> set[int]:
        return {p for p in _children(self.proc.pid) if "hub.serve.readers" in _cmdline(p)}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    running = Hub(tmp_path / "data", free_port())
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()


def _answers(url: str, count: int, headers: dict[str, str] | None = None) -> list[int]:
    """Each request on a new connection, so the kernel hands them to either process."""
    statuses = []
    for _ in range(count):
        with requests.Session() as s:
            answer = s.get(url, headers=headers, timeout=60, allow_redirects=False)
            statuses.append(answer.status_code)
    return statuses


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "hub.cli", *args, "--data", str(data)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=True)


def test_both_processes_answer_and_a_killed_reader_is_replaced(hub: Hub) -> None:
    # The socket is shared: until a reader's application runs, the primary takes its share.
    (reader,) = _wait_for(hub.readers, 60, "the reader process")
    assert set(_answers(f"{hub.url}/dicomweb/studies", 20)) == {401}  # a gated read
    assert set(_answers(f"{hub.url}/api/me", 20)) == {401}  # relayed when a reader takes it
    assert set(_answers(f"{hub.url}/login", 10)) == {200}

    os.kill(reader, signal.SIGKILL)
    replaced = _wait_for(lambda: hub.readers() - {reader}, 60, "a new reader")
    assert len(replaced) == 1
    assert hub.proc.poll() is None
    assert set(_answers(f"{hub.url}/dicomweb/studies", 10)) == {401}

    assert hub.stop() == 0
    for pid in replaced:
        _wait_for(lambda pid=pid: not _alive(pid), 60, "the reader to stop with the hub")


def test_a_reader_does_not_outlive_a_killed_primary(hub: Hub) -> None:
    (reader,) = _wait_for(hub.readers, 60, "the reader process")
    hub.proc.kill()
    hub.proc.wait()
    _wait_for(lambda: not _alive(reader), 60, "the orphaned reader to exit")


def test_a_token_revoked_on_the_command_line_is_refused_by_every_process_at_once(
    hub: Hub, tmp_path: Path
) -> None:
    """Each process caches resolved tokens for a few seconds; a revocation must not wait for
    that in the reader processes, nor in the primary when another process revoked."""
    _wait_for(hub.readers, 60, "the reader process")
    data = tmp_path / "data"
    _cli(data, "user", "add", "scope1", "--role", "pathologist", "--no-password")
    issued = _cli(data, "user", "token", "scope1")
    secret = issued.stdout.strip()
    token_id = issued.stderr.split()[1]  # "token N for scope1 ..."
    bearer = {"Authorization": f"Bearer {secret}"}
    url = f"{hub.url}/dicomweb/studies"
    assert set(_answers(url, 20, bearer)) == {200}  # now cached where it was answered

    _cli(data, "user", "token", "--revoke", token_id)
    assert set(_answers(url, 20, bearer)) == {401}
