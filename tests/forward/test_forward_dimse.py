"""Forwarding to a real C-STORE receiver (dcmtk storescp): byte-identical, durable, retried."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pydicom
import pytest
from forward_peers import dataset_sha256, forward_config, sample_files
from hubtest import free_port
from pydicom.data import get_testdata_file

from hub.archive import Source
from hub.archive.index import make_engine
from hub.forward.queue import ForwardQueue
from hub.security.tls import make_self_signed

pytestmark = pytest.mark.peers

HERE = Path(__file__).parent
TELEHEALTH = Source(door="telehealth", actor="clinic1", calling_ae=None)


async def ingest_all(hub, files: list[Path], source: Source = TELEHEALTH) -> dict[str, str]:
    """Ingest files; returns SOP Instance UID -> sha256 of the stored data set bytes."""
    expected = {}
    for path in files:
        res = await hub.archive.ingest_file(path, source=source)
        assert res.status == "stored", (path, res)
        expected[res.sop_instance_uid] = dataset_sha256(hub.archive.store.path(res.sha256))
    return expected


async def test_every_object_arrives_byte_identical(storescp_factory, hub_factory, corpus):
    pacs = storescp_factory()
    pacs.start()
    hub = await hub_factory(forward_config({"pacs": pacs.target()}, [{"target": "pacs"}]))
    files = [
        *sample_files(),
        corpus / "us" / "US-RGB-8-epicard.dcm",  # explicit VR big endian
        corpus / "dicom-wsi" / "sm_image.dcm",  # VL Whole Slide Microscopy
        corpus / "dicom-wsi" / "boxes_0.dcm",  # WSI level, JPEG, TILED_FULL
    ]

    expected = await ingest_all(hub, files)

    counts = await hub.wait_settled()
    assert counts == {"pacs": {"done": len(files)}}
    assert pacs.received() == expected


async def test_receiver_down_for_a_while_then_everything_arrives(storescp_factory, hub_factory):
    pacs = storescp_factory()
    pacs.start()
    config = forward_config({"pacs": pacs.target()}, [{"target": "pacs"}], batch_size=1)
    hub = await hub_factory(config)
    files = sample_files()
    first = await ingest_all(hub, files[:2])
    await hub.wait_until(lambda: _done_count(hub, 2))

    pacs.stop()
    rest = await ingest_all(hub, files[2:])

    async def retried_with_reason() -> bool:
        tasks = await hub.forwarder.queue.list(state="pending")
        return any(t.attempts >= 2 and "Connection refused" in (t.last_error or "") for t in tasks)

    await hub.wait_until(retried_with_reason)
    pacs.start()
    counts = await hub.wait_settled()
    assert counts == {"pacs": {"done": len(files)}}
    assert pacs.received() == {**first, **rest}


async def _done_count(hub, n: int) -> bool:
    return len(await hub.forwarder.queue.list(state="done")) >= n


async def test_hub_restart_mid_queue_delivers_everything(storescp_factory, hub_factory):
    pacs = storescp_factory()
    pacs.start("--sleep-after", "1")  # a slow receiver, so the restart lands mid-queue
    config = forward_config({"pacs": pacs.target()}, [{"target": "pacs"}], batch_size=1)
    hub = await hub_factory(config)
    expected = await ingest_all(hub, sample_files())
    await hub.wait_until(lambda: _done_count(hub, 1))

    await hub.close()
    reopened = await hub_factory(config, data_dir=hub.settings.data_dir)
    assert await reopened.forwarder.queue.list(state="in_flight") == []

    counts = await reopened.wait_settled()
    assert counts == {"pacs": {"done": len(expected)}}
    assert pacs.received() == expected


async def test_hub_killed_while_sending_resends_after_restart(storescp_factory, hub_factory):
    pacs = storescp_factory()
    pacs.start("--sleep-during", "1")  # sleeps a second per received PDU: slow C-STOREs
    config = forward_config({"pacs": pacs.target()}, [{"target": "pacs"}], batch_size=1)
    queued = await hub_factory({**config, "enabled": False})  # queue only, send nothing
    small = [Path(get_testdata_file(n)) for n in ("MR_small.dcm", "SC_rgb_rle.dcm", "CT_small.dcm")]
    expected = await ingest_all(queued, small)
    data_dir = queued.settings.data_dir
    await queued.close()

    script = HERE / "forward_hub_process.py"
    database = [queued.settings.database_url] if queued.settings.database_url else []
    crashed = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(data_dir), json.dumps(config), *database, cwd=HERE
    )
    queue = ForwardQueue(make_engine(queued.settings.db_url))
    try:
        while not await queue.list(state="in_flight"):
            assert crashed.returncode is None, "the hub process died on its own"
            await asyncio.sleep(0.05)
        crashed.kill()  # SIGKILL: no clean shutdown, the send is cut off mid-way
        await crashed.wait()
        interrupted = await queue.list(state="in_flight")
    finally:
        if crashed.returncode is None:
            crashed.kill()
            await crashed.wait()
        await queue.engine.dispose()
    assert interrupted, "the kill should have caught a task in flight"

    reopened = await hub_factory(config, data_dir=data_dir)
    counts = await reopened.wait_settled()
    assert counts == {"pacs": {"done": len(expected)}}
    assert pacs.received() == expected


async def test_encrypted_store_forwards_the_plaintext(storescp_factory, hub_factory, tmp_path):
    pacs = storescp_factory()
    pacs.start()
    config = forward_config({"pacs": pacs.target()}, [{"target": "pacs"}])
    hub = await hub_factory(config, encryption_key_file=str(tmp_path / "store.key"))
    files = sample_files()[:3]
    expected = {}
    for path in files:
        res = await hub.archive.ingest_file(path, source=TELEHEALTH)
        blob = hub.archive.store.inner.path(res.sha256).read_bytes()
        assert blob != path.read_bytes()  # encrypted at rest
        expected[res.sop_instance_uid] = dataset_sha256(path)

    counts = await hub.wait_settled()
    assert counts == {"pacs": {"done": len(files)}}
    assert pacs.received() == expected
    assert not list(hub.settings.tmp_dir.iterdir())  # decrypted copies are removed


async def test_tls_target_with_mutual_authentication(storescp_factory, hub_factory, tmp_path):
    pacs_cert, pacs_key = make_self_signed(tmp_path / "pacs-tls")
    hub_cert, hub_key = make_self_signed(tmp_path / "hub-tls")
    pacs = storescp_factory()
    # BCP 195 TLS; the PACS requires a client certificate it trusts (-rc is the default).
    pacs.start("+tls", str(pacs_key), str(pacs_cert), "+cf", str(hub_cert))
    target = {
        **pacs.target(),
        "tls": {"ca_file": str(pacs_cert), "cert_file": str(hub_cert), "key_file": str(hub_key)},
    }
    hub = await hub_factory(forward_config({"pacs": target}, [{"target": "pacs"}]))
    expected = await ingest_all(hub, sample_files()[:2])

    counts = await hub.wait_settled()
    assert counts == {"pacs": {"done": 2}}
    assert pacs.received() == expected


async def test_abort_mid_batch_costs_only_the_object_being_sent(storescp_factory, hub_factory):
    pacs = storescp_factory()
    pacs.start("--abort-after")  # aborts every association after the C-STORE request
    config = forward_config({"pacs": pacs.target()}, [{"target": "pacs"}])
    config["retry"] = {"base": 300}  # one attempt each, then wait
    queued = await hub_factory({**config, "enabled": False})
    await ingest_all(queued, sample_files()[:3])
    await queued.close()
    hub = await hub_factory(config, data_dir=queued.settings.data_dir)

    # All three go out in one batch; each association dies on its first object, so the last
    # object rides along three times but is sent once: only that attempt is charged.
    async def each_tried_once() -> bool:
        tasks = await hub.forwarder.queue.list()
        return all(t.attempts == 1 and t.state == "pending" for t in tasks)

    await hub.wait_until(each_tried_once)
    for task in await hub.forwarder.queue.list():
        assert "no C-STORE response" in task.last_error
    pacs.stop()
    pacs.start()  # a healthy receiver again
    for task in await hub.forwarder.queue.list():
        await hub.forwarder.queue.retry(task.id)
    hub.forwarder.wake()
    counts = await hub.wait_settled()
    assert counts == {"pacs": {"done": 3}}


async def test_conversion_between_little_endian_syntaxes_only_when_allowed(
    storescp_factory, hub_factory
):
    pacs = storescp_factory(accept_all=False)
    pacs.start("+xi")  # accepts implicit VR little endian only
    strict, lenient = pacs.target(), {**pacs.target(), "convert_uncompressed": True}
    rules = [{"target": "strict", "match": {"modality": "CT"}}, {"target": "lenient"}]
    hub = await hub_factory(forward_config({"strict": strict, "lenient": lenient}, rules))
    ct = Path(get_testdata_file("CT_small.dcm"))  # explicit VR little endian
    res = await hub.archive.ingest_file(ct, source=TELEHEALTH)

    counts = await hub.wait_settled()
    assert counts == {"strict": {"dead": 1}, "lenient": {"done": 1}}
    (dead,) = await hub.forwarder.queue.list(state="dead")
    assert (
        "no presentation context" in dead.last_error and "convert_uncompressed" in dead.last_error
    )
    (done,) = await hub.forwarder.queue.list(state="done")
    assert (
        "re-encoded from Explicit VR Little Endian to Implicit VR Little Endian" in done.last_error
    )
    (received,) = pacs.out.iterdir()
    sent = pydicom.dcmread(received, force=True)  # a bare data set, implicit VR
    original = pydicom.dcmread(ct)
    assert sent.SOPInstanceUID == res.sop_instance_uid
    assert sent.PixelData == original.PixelData
    assert sent.PatientName == original.PatientName


async def test_a_target_that_is_down_does_not_hold_up_the_others(storescp_factory, hub_factory):
    pacs = storescp_factory()
    pacs.start()
    down = {"type": "dimse", "host": "127.0.0.1", "port": free_port(), "called_ae": "DOWN"}
    targets = {"pacs": pacs.target(), "down": down}
    config = forward_config(targets, [{"targets": ["down", "pacs"]}], batch_size=2)
    hub = await hub_factory(config)
    expected = await ingest_all(hub, sample_files())

    async def pacs_has_everything() -> bool:
        return len(await hub.forwarder.queue.list(state="done", target="pacs")) == len(expected)

    await hub.wait_until(pacs_has_everything)
    assert pacs.received() == expected
    waiting = await hub.forwarder.queue.list(target="down")
    assert len(waiting) == len(expected)
    assert all(t.state in ("pending", "in_flight") for t in waiting)
