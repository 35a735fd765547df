"""The reactor wake-ups: associations still work, release their wake-up sockets, and threads
without a waiter keep pynetdicom's plain sleep."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pynetdicom.association
import pynetdicom.dul
import pytest
from dimse_peers import AE, HOST, DimseHub, run
from pynetdicom import AE as PynetdicomAE
from pynetdicom.sop_class import Verification

from hub.dimse import wakeups

pytestmark = pytest.mark.peers


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _echo_once(port: int) -> int:
    ae = PynetdicomAE(ae_title="WAKEUPS")
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, port, ae_title=AE)
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    return status.Status


async def test_associations_release_their_wakeup_sockets(dimse_hub: DimseHub) -> None:
    assert (await run("echoscu", *dimse_hub.address)).rc == 0  # warm up the server
    before = _open_descriptors()
    for _ in range(5):
        assert await asyncio.to_thread(_echo_once, dimse_hub.port) == 0x0000
    deadline = time.monotonic() + 60  # the SCP closes its end after answering the release
    while _open_descriptors() > before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _open_descriptors() <= before


async def test_many_small_stores_in_one_association(dimse_hub: DimseHub, tmp_path) -> None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ds = dcmread(get_testdata_file("CT_small.dcm"))
    paths = []
    for n in range(30):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = n + 1
        paths.append(tmp_path / f"{n}.dcm")
        ds.save_as(paths[-1])
    result = await run("storescu", "-v", *dimse_hub.address, *paths)
    assert result.rc == 0, result
    assert result.out.count("(Success)") == len(paths)


def test_threads_without_a_waiter_sleep_as_usual() -> None:
    wakeups.install()
    assert isinstance(pynetdicom.dul.time, wakeups._Clock)
    assert pynetdicom.association.time.monotonic() > 0  # the rest of `time` is passed through
    done = threading.Event()

    def sleeper() -> None:
        pynetdicom.association.time.sleep(0.001)
        done.set()

    thread = threading.Thread(target=sleeper)
    thread.start()
    thread.join(30)
    assert done.is_set()


def test_a_woken_waiter_stops_waiting() -> None:
    waiter = wakeups._EventWaiter()
    returned = threading.Event()

    def wait_long() -> None:
        waiter.wait(600)
        returned.set()

    thread = threading.Thread(target=wait_long, daemon=True)
    thread.start()
    waiter.wake()
    thread.join(30)
    assert returned.is_set()
