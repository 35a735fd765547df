"""Data sets streamed into the store's temp dir while they arrive: stored bytes hash to their
name, and other pynetdicom SCPs in the same process still receive data sets in memory."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from dimse_peers import PYDICOM_DATA, DimseHub, dataset_bytes, run
from hubtest import free_port
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE as PynetdicomAE
from pynetdicom import evt
from pynetdicom.sop_class import CTImageStorage

from hub.archive.query import Query
from hub.archive.verify import intact

pytestmark = pytest.mark.peers

CT = Path(get_testdata_file("CT_small.dcm"))
BIG = PYDICOM_DATA / "RG1_UNCI.dcm"  # 7 MB: hundreds of PDUs


async def test_streamed_objects_are_stored_under_their_hash(dimse_hub: DimseHub) -> None:
    for path in (CT, BIG):
        result = await run("storescu", *dimse_hub.address, path)
        assert result.rc == 0, result
    rows = await dimse_hub.archive.search(Query(level="INSTANCE"))
    assert len(rows) == 2
    for row in rows:
        study = row["0020000D"]["Value"][0]
        sop_uid = row["00080018"]["Value"][0]
        (ref,) = await dimse_hub.archive.instances(study, sop_uid=sop_uid)
        stored = dimse_hub.archive.store
        assert await intact(stored, ref.sha256)
        assert await stored.size(ref.sha256) == ref.size
    assert list(dimse_hub.settings.tmp_dir.iterdir()) == []


def _plain_scp_receives(path: Path) -> bytes:
    """A pynetdicom SCP of someone else in this process, with pynetdicom's defaults."""
    received: list[bytes] = []
    done = threading.Event()

    def on_store(event: evt.Event) -> int:
        received.append(event.request.DataSet.getvalue())
        done.set()
        return 0x0000

    ae = PynetdicomAE(ae_title="PLAIN")
    ae.add_supported_context(CTImageStorage)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        scu = PynetdicomAE(ae_title="SENDER")
        scu.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", port, ae_title="PLAIN")
        assert assoc.is_established
        status = assoc.send_c_store(path)
        assoc.release()
        assert status.Status == 0x0000
        assert done.wait(30)
    finally:
        server.shutdown()
    return received[0]


async def test_other_scps_in_the_process_receive_in_memory(dimse_hub: DimseHub) -> None:
    assert (await run("echoscu", *dimse_hub.address)).rc == 0  # ours is up and patched
    received = await asyncio.to_thread(_plain_scp_receives, CT)
    assert received == dataset_bytes(CT)
