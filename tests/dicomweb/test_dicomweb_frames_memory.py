"""Frame requests cannot blow up the server's memory: repeated frames are refused, and decoded
frames are streamed one at a time within a budget. Measured on a real `tessera serve` process:
its peak resident size (VmHWM), not a timing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
import pydicom
import pytest
from hubtest import HubProcess, bearer_for, free_port, tessera
from pydicom.data import get_testdata_file

DECODED = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'
MIB = 1024**2
ALLOWED_GROWTH = 300 * MIB  # the 8 answers below are 880 MiB of decoded pixels in all


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[HubProcess, str, dict[str, str]]]:
    path = get_testdata_file("color3d_jpeg_baseline.dcm")  # 120 JPEG frames of 640x480 RGB
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    data = tmp_path / "data"
    tessera(data, "import", path)
    headers = bearer_for(data, "reader", "pathologist")
    running = HubProcess(data, free_port())
    base = (
        f"{running.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/"
    )
    try:
        yield running, base, headers
    finally:
        running.stop()


async def test_repeated_frame_numbers_are_refused(hub) -> None:
    running, base, headers = hub
    async with (
        aiohttp.ClientSession(headers={**headers, "Accept": DECODED}) as session,
        session.get(base + ",".join(["1"] * 2000)) as resp,
    ):
        assert resp.status == 400
        assert "more than once" in (await resp.json())["detail"]


async def test_eight_decoded_frame_requests_at_once_stay_within_bounded_memory(hub) -> None:
    running, base, headers = hub
    every_frame = ",".join(str(n) for n in range(1, 121))
    async with aiohttp.ClientSession(headers={**headers, "Accept": DECODED}) as session:
        async with session.get(base + "1") as resp:  # warm up the decoders
            assert resp.status == 200
        before = psutil.Process(running.proc.pid).memory_info().rss

        async def fetch() -> int:
            async with session.get(base + every_frame) as resp:
                assert resp.status == 200
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 20):
                    size += len(chunk)
                return size

        sizes = await asyncio.gather(*(fetch() for _ in range(8)))
    assert all(size > 120 * 640 * 480 * 3 for size in sizes)
    growth = _peak_rss(running.proc.pid) - before
    assert growth < ALLOWED_GROWTH, f"peak grew by {growth // MIB} MiB"
