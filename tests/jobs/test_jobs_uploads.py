"""Resumable uploads and background jobs against a real archive (and the real converter)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydicom.data import get_testdata_file

import hub.jobs
from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.archive import Archive
from hub.config import Settings
from hub.jobs.runner import JobRunner
from hub.jobs.tables import jobs
from hub.worklist import model as worklist

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def corpus_file(relative: str) -> Path:
    path = CORPUS / relative
    if not path.exists():
        pytest.skip(f"test corpus absent: {path}")
    return path


async def start_client(data_dir: Path, max_upload_bytes: int = 8 * 1024**3) -> TestClient:
    settings = Settings(data_dir=data_dir, max_upload_bytes=max_upload_bytes)
    archive = await Archive.open(settings)
    app = web.Application()
    app[ARCHIVE_KEY] = archive
    app[SETTINGS_KEY] = settings

    async def close_archive(app: web.Application):
        yield
        await archive.close()

    app.cleanup_ctx.append(close_archive)
    hub.jobs.setup(app)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(tmp_path):
    client = await start_client(tmp_path)
    yield client
    await client.close()


async def upload(client: TestClient, path: Path, chunk: int | None = None, **fields) -> dict:
    data = await asyncio.to_thread(path.read_bytes)
    resp = await client.post(
        "/api/uploads", json={"filename": path.name, "size": len(data), **fields}
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    step = chunk or created["chunk_size"]
    for offset in range(0, len(data), step):
        resp = await client.put(
            f"/api/uploads/{created['id']}?offset={offset}", data=data[offset : offset + step]
        )
        assert resp.status == 200, await resp.text()
    return created


async def complete(client: TestClient, upload_id: str) -> dict:
    resp = await client.post(f"/api/uploads/{upload_id}/complete")
    assert resp.status == 202, await resp.text()
    return (await resp.json())["job"]


async def follow_events(client: TestClient, job_id: str) -> list[dict]:
    """Read the server-sent events of a job until the server ends the stream."""
    events = []
    async with client.get(f"/api/jobs/{job_id}/events", timeout=None) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for line in resp.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
    return events


async def test_dicom_upload_resumes_and_ingests(client):
    path = Path(get_testdata_file("CT_small.dcm"))
    data = await asyncio.to_thread(path.read_bytes)
    resp = await client.post("/api/uploads", json={"filename": "CT_small.dcm", "size": len(data)})
    created = await resp.json()
    url = f"/api/uploads/{created['id']}"

    resp = await client.put(f"{url}?offset=0", data=data[:1000])
    assert (await resp.json())["received"] == 1000
    # A chunk sent at the wrong offset is refused and says where to resume.
    resp = await client.put(f"{url}?offset=5000", data=data[5000:6000])
    assert resp.status == 409
    assert (await resp.json())["received"] == 1000
    # Completing early is refused too.
    resp = await client.post(f"{url}/complete")
    assert resp.status == 409

    resumed = (await (await client.get(url)).json())["received"]
    resp = await client.put(f"{url}?offset={resumed}", data=data[resumed:])
    assert (await resp.json())["received"] == len(data)

    job = await complete(client, created["id"])
    assert job["kind"] == "ingest"
    events = await follow_events(client, job["id"])
    final = events[-1]
    assert final["status"] == "done", final
    assert final["instances"] == 1
    archive = client.app[ARCHIVE_KEY]
    refs = await archive.instances(final["study_uid"])
    assert len(refs) == 1
    assert await asyncio.to_thread(archive.store.path(refs[0].sha256).read_bytes) == data
    # The consumed upload is gone.
    assert (await client.get(url)).status == 404


async def test_upload_limits(tmp_path):
    client = await start_client(tmp_path, max_upload_bytes=1000)
    try:
        resp = await client.post("/api/uploads", json={"filename": "a.svs", "size": 1001})
        assert resp.status == 413
        resp = await client.post("/api/uploads", json={"filename": "a.svs"})
        assert resp.status == 400
        created = await (
            await client.post("/api/uploads", json={"filename": "../../a.svs", "size": 10})
        ).json()
        assert created["filename"] == "a.svs"
        resp = await client.put(f"/api/uploads/{created['id']}?offset=0", data=b"x" * 11)
        assert resp.status == 413
        assert (await (await client.get(f"/api/uploads/{created['id']}")).json())["received"] == 0
        resp = await client.put(f"/api/uploads/{created['id']}", data=b"x")
        assert resp.status == 400
        assert (await client.get("/api/uploads/nope")).status == 404
        assert (await client.get("/api/jobs/nope")).status == 404
    finally:
        await client.close()


async def test_slide_conversion_reports_progress_and_ingests(client):
    svs = corpus_file("wsi/CMU-1-Small-Region.svs")
    created = await upload(
        client,
        svs,
        chunk=3_000_000,
        patient_id="P-UPLOAD",
        patient_name="Upload^Test",
        accession="ACC-UP-1",
        specimen_id="S-UP-1",
    )
    job = await complete(client, created["id"])
    assert job["kind"] == "convert"
    events = await follow_events(client, job["id"])
    final = events[-1]
    assert final["status"] == "done", final
    assert final["percent"] == 100.0
    assert final["frames_total"] > 0 and final["frames_done"] == final["frames_total"]
    percents = [e["percent"] for e in events]
    assert percents == sorted(percents)

    archive = client.app[ARCHIVE_KEY]
    refs = await archive.instances(final["study_uid"])
    assert len(refs) == final["instances"] >= 2
    assert {r.patient_id for r in refs} == {"P-UPLOAD"}
    polled = await (await client.get(f"/api/jobs/{job['id']}")).json()
    assert polled["status"] == "done" and polled["finished"]


class LateProgressRunner(JobRunner):
    """Holds every progress message until its job has finished, then delivers them.

    The messages travel the real queue and reader thread; only their hand-over to the event loop
    is postponed. A worker's progress and its result take different channels, so the result may
    overtake the last messages; this forces that order, which no real queue can be made to keep.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[tuple] = []

    def _on_progress(self, *message) -> None:
        self.held.append(message)

    async def _run(self, job, upload) -> None:
        await super()._run(job, upload)
        for message in self.held:
            super()._on_progress(*message)


async def test_progress_arriving_after_the_result_still_ends_with_the_totals(tmp_path, monkeypatch):
    monkeypatch.setattr(hub.jobs, "JobRunner", LateProgressRunner)
    client = await start_client(tmp_path)
    try:
        created = await upload(client, corpus_file("wsi/CMU-1-Small-Region.svs"))
        job = await complete(client, created["id"])
        final = (await follow_events(client, job["id"]))[-1]
        assert final["status"] == "done", final
        assert final["frames_total"] > 0 and final["frames_done"] == final["frames_total"]
        assert final["percent"] == 100.0
        runner = client.app[hub.jobs.JOBS_KEY]
        assert len(runner.held) >= 2  # the start and the last message did come, late
        polled = await (await client.get(f"/api/jobs/{job['id']}")).json()
        assert (polled["frames_done"], polled["frames_total"]) == (
            final["frames_done"],
            final["frames_total"],
        )
    finally:
        await client.close()


async def test_unreadable_slide_fails_with_reason_and_stores_nothing(client):
    bad = corpus_file("bad/unopenable.tiff")
    created = await upload(client, bad)
    job = await complete(client, created["id"])
    events = await follow_events(client, job["id"])
    final = events[-1]
    assert final["status"] == "failed"
    assert final["error"].startswith("conversion failed:")
    assert final["instances"] == 0 and final["study_uid"] is None
    archive = client.app[ARCHIVE_KEY]
    from hub.archive.query import Query

    assert await archive.search(Query(level="STUDY", keys={})) == []


async def test_restart_marks_interrupted_jobs_failed(tmp_path):
    client = await start_client(tmp_path)
    try:
        created = await upload(client, Path(get_testdata_file("CT_small.dcm")))
        job = await complete(client, created["id"])
        await follow_events(client, job["id"])
        node = client.app[hub.jobs.JOBS_KEY].node
        # A crash mid-job leaves a row in 'running' under this node's lease; a kill -9 of the
        # server cannot be provoked from inside the test process, so the row it would leave is
        # written directly (its lease still runs: the restart, not the reaper, fails it).
        async with client.app[ARCHIVE_KEY].engine.begin() as conn:
            await conn.execute(
                jobs.insert().values(
                    id="crashed",
                    kind="convert",
                    filename="x.svs",
                    status="running",
                    created_at=time.time(),
                    started_at=time.time(),
                    instances=2,
                    lease_owner=node,
                    lease_expires_at=time.time() + 3600,
                )
            )
    finally:
        await client.close()

    client = await start_client(tmp_path)
    try:
        assert client.app[hub.jobs.JOBS_KEY].node == node  # the data folder keeps the node's id
        crashed = await (await client.get("/api/jobs/crashed")).json()
        assert crashed["status"] == "failed"
        assert crashed["error"] == (
            f"interrupted: node {node} restarted while the job was running"
            "; the study is incomplete: 2 instances were stored"
        )
        assert crashed["node"] == node
        listed = {
            j["id"]: j["status"] for j in (await (await client.get("/api/jobs")).json())["jobs"]
        }
        assert listed == {"crashed": "failed", job["id"]: "done"}
    finally:
        await client.close()


async def test_sse_stream_ends_for_finished_job(client):
    created = await upload(client, Path(get_testdata_file("CT_small.dcm")))
    job = await complete(client, created["id"])
    await asyncio.wait_for(follow_events(client, job["id"]), 30)
    events = await asyncio.wait_for(follow_events(client, job["id"]), 30)
    assert len(events) == 1 and events[0]["finished"]


async def test_worklist_item_supplies_the_slide_identifiers(client):
    archive = client.app[ARCHIVE_KEY]
    item = await worklist.create(
        archive.engine,
        worklist.NewItem(
            patient_name="Work^List", patient_id="P-WL", modality="SM", accession="ACC-WL"
        ),
    )
    resp = await client.post(
        "/api/uploads", json={"filename": "a.svs", "size": 10, "worklist_item": 999999}
    )
    assert resp.status == 400
    assert "worklist" in (await resp.json())["detail"]

    created = await upload(
        client, corpus_file("wsi/small.svs"), patient_id="TYPED", worklist_item=item.id
    )
    assert created["fields"]["patient_id"] == "P-WL"
    job = await complete(client, created["id"])
    final = (await follow_events(client, job["id"]))[-1]
    assert final["status"] == "done", final
    assert final["study_uid"] == item.study_uid
    refs = await archive.instances(item.study_uid)
    assert refs and {r.patient_id for r in refs} == {"P-WL"}


async def test_upload_resumes_after_the_connection_drops_mid_chunk(client):
    path = Path(get_testdata_file("CT_small.dcm"))
    data = await asyncio.to_thread(path.read_bytes)
    resp = await client.post("/api/uploads", json={"filename": path.name, "size": len(data)})
    upload_id = (await resp.json())["id"]
    sent = 20_000
    # A client that announces the whole file, sends part of it and goes away.
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"PUT /api/uploads/{upload_id}?offset=0 HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data[:sent]
    )
    await writer.drain()

    async def received() -> int:
        return (await (await client.get(f"/api/uploads/{upload_id}")).json())["received"]

    deadline = time.monotonic() + 60
    while await received() < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # the bytes sent are on their way to the server's file
    writer.close()
    await writer.wait_closed()
    assert await received() == sent

    # Until the server notices the lost connection, the upload's chunk is still being written.
    url = f"/api/uploads/{upload_id}?offset={sent}"
    while (resp := await client.put(url, data=data[sent:])).status == 409:
        assert "being written" in (await resp.json())["detail"]
        assert time.monotonic() < deadline, "the server did not notice the lost connection"
        await asyncio.sleep(0.1)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["received"] == len(data)
    job = await complete(client, upload_id)
    final = (await follow_events(client, job["id"]))[-1]
    assert final["status"] == "done", final
    refs = await client.app[ARCHIVE_KEY].instances(final["study_uid"])
    stored = await asyncio.to_thread(client.app[ARCHIVE_KEY].store.path(refs[0].sha256).read_bytes)
    assert stored == data


async def test_an_upload_becomes_one_job_only(client):
    created = await upload(client, corpus_file("wsi/CMU-1-Small-Region.svs"))
    url = f"/api/uploads/{created['id']}/complete"
    responses = await asyncio.gather(client.post(url), client.post(url), client.post(url))
    accepted = [r for r in responses if r.status == 202]
    assert len(accepted) == 1, [r.status for r in responses]
    assert {r.status for r in responses} - {202} <= {404, 409}
    job = (await accepted[0].json())["job"]
    final = (await follow_events(client, job["id"]))[-1]
    assert final["status"] == "done", final
    listed = (await (await client.get("/api/jobs")).json())["jobs"]
    assert [j["upload_id"] for j in listed] == [created["id"]]


async def test_a_conversion_is_ingested_smallest_first_as_it_goes(client):
    """Each instance is ingested as the conversion hands it over: the first ones are in the
    archive while the job still runs (held here between two instances by the runner's hook)."""
    runner = client.app[hub.jobs.JOBS_KEY]
    order: list[str] = []
    seen_while_held: list[dict] = []

    async def gate(job: dict, path: Path) -> None:
        order.append(path.name)
        if len(order) == 3:  # two stored, the third waits: look at the job from outside
            polled = await (await client.get(f"/api/jobs/{job['id']}")).json()
            seen_while_held.append(polled)

    runner.before_ingest = gate
    created = await upload(client, corpus_file("wsi/test3-DAPI-2.ndpi"))
    job = await complete(client, created["id"])
    final = (await follow_events(client, job["id"]))[-1]
    assert final["status"] == "done", final
    assert order == ["overview.dcm", *(f"level{i}.dcm" for i in range(6, -1, -1))]
    [held] = seen_while_held
    assert held["instances"] == 2 and not held["finished"] and held["study_uid"]
    assert len(await client.app[ARCHIVE_KEY].instances(final["study_uid"])) == 8


async def test_a_conversion_failing_part_way_keeps_what_it_stored_and_says_so(client, tmp_path):
    from slide_faults import ndpi_with_broken_level0

    broken = ndpi_with_broken_level0(CORPUS, tmp_path / "broken.ndpi")
    created = await upload(client, broken)
    job = await complete(client, created["id"])
    final = (await follow_events(client, job["id"]))[-1]
    assert final["status"] == "failed"
    assert final["error"].startswith("conversion failed: broken.ndpi: cannot re-tile")
    # How many smaller levels were done when level 0 failed depends on scheduling; the error
    # gives the number actually stored (at most all 7 but level 0).
    said = re.search(r"; the study is incomplete: (\d+) instances were stored$", final["error"])
    assert said, final["error"]
    stored = int(said.group(1))
    assert 1 <= stored <= 7 and final["instances"] == stored
    assert len(await client.app[ARCHIVE_KEY].instances(final["study_uid"])) == stored
    polled = await (await client.get(f"/api/jobs/{job['id']}")).json()
    assert polled["error"] == final["error"] and polled["study_uid"] == final["study_uid"]
