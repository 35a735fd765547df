"""Several ``tessera serve`` nodes sharing one PostgreSQL index and one S3 bucket.

Each node is a real process with a data folder, an HTTP port and a DICOM port of its own, and
``TESSERA_NODE_ID`` set to its name; all of them index into one fresh PostgreSQL database and
keep their objects in one bucket under one key prefix. The servers come from the wrappers:
``tests/with_postgres.sh`` (``TESSERA_TEST_POSTGRES``) and ``tests/with_seaweedfs.sh``
(``TESSERA_S3_*``); without both, ``missing_servers()`` says what is missing.

Used by the tests in this folder (the ``cluster`` fixture) and by ``bench/cluster_bench.py``.
Kept out of a conftest.py so that both can import it by a name no other folder uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hubtest import free_port
from s3_server import SeaweedS3, from_environment, unique_prefix

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0
BANNER = "Tessera is running"
# Settings a test run may have exported that would give a node another index or store.
NOT_INHERITED = ("TESSERA_DATABASE_URL", "TESSERA_S3_PREFIX", "TESSERA_NODE_ID", "TESSERA_DATA")


def missing_servers() -> str | None:
    """Why a cluster cannot run here (None: it can)."""
    missing = []
    if not os.environ.get("TESSERA_TEST_POSTGRES"):
        missing.append("PostgreSQL (run under tests/with_postgres.sh)")
    if from_environment() is None:
        missing.append("S3 (run under tests/with_seaweedfs.sh)")
    if not missing:
        return None
    return "a cluster needs a shared index and store; missing: " + ", ".join(missing)


@dataclass
class Node:
    """One ``tessera serve`` of the cluster."""

    name: str
    data: Path
    port: int
    dimse_port: int
    env: dict[str, str]
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return self.url + "/dicomweb"

    @property
    def log(self) -> Path:
        return self.data.parent / f"{self.name}.log"

    def start(self) -> Node:
        """Start the process; returns once it serves."""
        self.data.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "hub.cli", "serve", "--data", str(self.data)]
        command += ["--port", str(self.port), "--dimse-port", str(self.dimse_port)]
        with open(self.log, "ab") as log:
            begun = log.tell()  # a restarted node appends to its log
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready(begun)
        return self

    def _wait_ready(self, begun: int) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with open(self.log, "rb") as log:
                log.seek(begun)
                if BANNER.encode() in log.read():
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"node {self.name} did not start:\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the node stops at once, with whatever it had in flight."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Cluster:
    """The shared index and bucket, and the nodes started on them."""

    postgres: str  # postgresql://user@host:port/ of a server where databases may be made
    s3: SeaweedS3
    work: Path
    database: str = field(default_factory=lambda: f"tessera_cluster_{uuid.uuid4().hex[:12]}")
    prefix: str = field(default_factory=unique_prefix)
    # One audit key for every node and command: they append to one chain in the shared index.
    audit_key: str = field(default_factory=lambda: os.urandom(32).hex(), repr=False)
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        server = self.postgres.replace("postgresql://", "postgresql+asyncpg://").rstrip("/")
        return f"{server}/{self.database}"

    def env(self, node_id: str | None = None) -> dict[str, str]:
        """The environment of a node (or, without ``node_id``, of a command on the cluster)."""
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        env |= self.s3.env()
        env |= {
            "PYTHONPATH": str(ROOT),
            "TESSERA_DATABASE_URL": self.database_url,
            "TESSERA_S3_PREFIX": self.prefix,
            "TESSERA_AUDIT_KEY": self.audit_key,
        }
        if node_id:
            env["TESSERA_NODE_ID"] = node_id
        return env

    def start_node(self, name: str) -> Node:
        node = Node(name, self.work / name, free_port(), free_port(), self.env(name)).start()
        self.nodes[name] = node
        return node

    def tessera(self, *args: str) -> str:
        """Run a ``tessera`` command on the shared index and bucket; its standard output."""
        data = self.work / "cli"
        command = [sys.executable, "-m", "hub.cli", *args, "--data", str(data)]
        done = subprocess.run(
            command, cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"tessera {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def bearer(self, user: str, role: str) -> dict[str, str]:
        """Headers of a new account with ``role``: valid on every node (the index is shared)."""
        self.tessera("user", "add", user, "--role", role, "--no-password")
        token = self.tessera("user", "token", user).strip().splitlines()[-1].strip()
        return {"Authorization": f"Bearer {token}"}

    def allow_ae(self, title: str, *services: str, role: str = "integration") -> None:
        self.tessera("ae", "allow", title, *services, "--role", role)

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()
        asyncio.run(_drop_database(self.postgres, self.database))


async def _create_database(postgres: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(postgres.rstrip("/") + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _drop_database(postgres: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(postgres.rstrip("/") + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.contextmanager
def running_cluster(*names: str, work: Path | None = None) -> Iterator[Cluster]:
    """A fresh database and key prefix on the servers the wrappers exported, with one node per
    name started on them (one after the other: the first creates the schema)."""
    reason = missing_servers()
    if reason:
        raise RuntimeError(reason)
    s3 = from_environment()
    assert s3 is not None
    own = work is None
    folder = Path(tempfile.mkdtemp(prefix="tessera-cluster-")) if work is None else work
    cluster = Cluster(os.environ["TESSERA_TEST_POSTGRES"], s3, folder)
    asyncio.run(_create_database(cluster.postgres, cluster.database))
    try:
        for name in names:
            cluster.start_node(name)
        yield cluster
    finally:
        cluster.close()
        if own:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(name="cluster")
def cluster_fixture(tmp_path: Path) -> Iterator[Cluster]:
    """Nodes ``node-a`` and ``node-b`` on a shared index and bucket; skips without the servers."""
    reason = missing_servers()
    if reason:
        pytest.skip(reason)
    with running_cluster("node-a", "node-b", work=tmp_path) as started:
        yield started
