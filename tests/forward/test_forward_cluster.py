"""Two `tessera serve` nodes on one PostgreSQL index share the forward queue: the node killed
mid-send loses no work, and the other does not take what the first still holds."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
from forward_peers import dataset_sha256, forward_config
from hubtest import HubProcess, free_port, tessera
from pydicom.data import get_testdata_file

from hub.archive.index import make_engine
from hub.config import Settings
from hub.forward.queue import ForwardQueue, Task
from hub.serve.tables import nodes
from hub.stores import open_store

pytestmark = pytest.mark.peers

LEASE_SECONDS = 4
FILES = ("MR_small.dcm", "SC_rgb_rle.dcm", "CT_small.dcm")


async def test_a_killed_nodes_tasks_are_sent_by_the_other(
    storescp_factory, database_url, tmp_path, monkeypatch
):
    if not database_url:
        pytest.skip(
            "two nodes share an index on PostgreSQL only: SQLite cannot be shared by two "
            "servers safely (run under tests/with_postgres.sh)"
        )
    pacs = storescp_factory()  # not started yet: the target refuses connections at first
    config = forward_config({"pacs": pacs.target()}, [{"target": "pacs"}])
    config["timeouts"] = {**config["timeouts"], "dimse": 120, "network": 120}  # a slow receiver
    extra = {"forward": config, "cluster": {"heartbeat_seconds": 0.5}}
    monkeypatch.setenv("TESSERA_EXTRA", json.dumps(extra))
    monkeypatch.setenv("TESSERA_LEASE_SECONDS", str(LEASE_SECONDS))
    data_a, data_b = tmp_path / "node-a", tmp_path / "node-b"
    queue = ForwardQueue(make_engine(database_url))
    started: list[HubProcess] = []

    def serve(data: Path, node: str) -> HubProcess:
        started.append(HubProcess(data, free_port(), env={"TESSERA_NODE_ID": node}))
        return started[-1]

    try:
        node_a = serve(data_a, "node-a")
        tessera(data_a, "import", *(get_testdata_file(name) for name in FILES))
        await until(queue, lambda ts: all("refused" in (t.last_error or "") for t in ts))

        pacs.start("-v", "--sleep-during", "3")  # slow C-STOREs: node-a holds its batch a while
        # Only a batch whose association storescp accepted is held: one leased just before it
        # listened fails at once with "refused" and goes back to pending.
        await _until_logged(pacs.log, "Association Received")
        tasks = await until(queue, lambda ts: any(_leased_to(t, "node-a") for t in ts))
        held = [t for t in tasks if _leased_to(t, "node-a")]

        data_b.mkdir()  # node-b reads the objects node-a stored, as from a shared volume
        (data_b / "blobs").symlink_to(data_a / "blobs", target_is_directory=True)
        serve(data_b, "node-b")
        await asyncio.sleep(
            1.0
        )  # after its start-up requeue (done when ready), a few reaper rounds
        while_both = {t.id: t for t in await queue.list()}
        assert all(_leased_to(while_both[t.id], "node-a") for t in held), (
            "node-b took tasks node-a still held (or node-a finished before it could be killed)",
            [_brief(t) for t in while_both.values()],
        )

        node_a.proc.send_signal(signal.SIGKILL)  # no clean shutdown, the batch is cut off
        node_a.proc.wait()
        pacs.stop()
        pacs.start()  # quick again, for node-b
        done = await until(queue, lambda ts: all(t.state == "done" for t in ts), within=180)
        registered = await node_ids(queue)
    finally:
        for process in started:
            process.stop()
        await queue.engine.dispose()

    assert registered == {"node-a", "node-b"}
    assert pacs.received() == await stored_data_sets(data_a, done)


def _brief(task: Task) -> tuple:
    return task.id, task.state, task.attempts, task.lease_owner, task.last_error


async def _until_logged(log: Path, text: str, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not (log.exists() and text in log.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {log}"
        await asyncio.sleep(0.1)


def _leased_to(task: Task, node: str) -> bool:
    return task.state == "in_flight" and task.lease_owner == node


async def until(queue: ForwardQueue, check, within: float = 120) -> list[Task]:
    """Poll the queue until ``check(tasks)`` holds for its (non-empty) task list."""
    deadline = time.monotonic() + within
    while True:
        tasks = await queue.list(limit=100)
        if tasks and check(tasks):
            return tasks
        assert time.monotonic() < deadline, [_brief(t) for t in tasks]
        await asyncio.sleep(0.1)


async def node_ids(queue: ForwardQueue) -> set[str]:
    async with queue.engine.connect() as conn:
        return set((await conn.scalars(nodes.select().with_only_columns(nodes.c.id))).all())


async def stored_data_sets(data: Path, tasks: list[Task]) -> dict[str, str]:
    """SOP Instance UID -> sha256 of the data set of the object as stored."""
    store = open_store(Settings.from_env(data_dir=data))
    found = {}
    for task in tasks:
        async with store.materialize(task.sha256) as path:
            found[task.sop_uid] = dataset_sha256(path)
    return found
