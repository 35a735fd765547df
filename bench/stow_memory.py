"""Server memory while a 2 GB STOW-RS body streams in (the body is never held in memory).

Starts `tessera serve` in a subprocess, streams a multipart body of synthetic CT instances
(about 50 MB each, unique UIDs) and samples the server's RSS every 100 ms.

    .venv/bin/python -m bench.stow_memory [--gigabytes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import psutil
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

BOUNDARY = "stow-memory"
PART_PIXELS = 5000  # 5000 x 5000 x 16 bit = 50 MB per instance


def instance_header_and_pixels() -> tuple[pydicom.Dataset, bytes]:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = PART_PIXELS
    pixels = np.random.default_rng(1).integers(0, 4000, (PART_PIXELS, PART_PIXELS), np.uint16)
    return ds, pixels.tobytes()


def encode(ds: pydicom.Dataset, pixels: bytes, study: str) -> bytes:
    ds.StudyInstanceUID = study
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PixelData = pixels
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def sample(pid: int, peak: list[int], stop: threading.Event) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        peak.append(proc.memory_info().rss)
        time.sleep(0.1)


async def main(gigabytes: float) -> None:
    data = Path(tempfile.mkdtemp(prefix="stow-mem-"))
    port = 18731
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "user",
            "add",
            "--data",
            str(data),
            "--role",
            "integration",
            "--no-password",
            "bench",
        ],
        check=True,
        capture_output=True,
    )
    token = subprocess.run(
        [sys.executable, "-m", "hub.cli", "user", "token", "--data", str(data), "bench"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[0]
    server = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--data", str(data), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await asyncio.sleep(4)
    ds, pixels = instance_header_and_pixels()
    study = generate_uid()
    count = int(gigabytes * 1024**3 // len(pixels)) + 1
    idle = psutil.Process(server.pid).memory_info().rss
    samples: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=sample, args=(server.pid, samples, stop), daemon=True)
    watcher.start()
    sent = 0

    async def body():
        nonlocal sent
        for _ in range(count):
            part = encode(ds, pixels, study)
            sent += len(part)
            yield (
                f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
            )
        yield f"--{BOUNDARY}--\r\n".encode()

    started = time.monotonic()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/dicomweb/studies",
            data=body(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=3600),
        ) as r,
    ):
        status = r.status
        await r.read()
    elapsed = time.monotonic() - started
    stop.set()
    watcher.join()
    server.terminate()
    server.wait()
    print(
        f"status {status}: {count} instances, {sent / 1024**3:.2f} GiB in {elapsed:.1f} s ({sent / 1024**2 / elapsed:.0f} MB/s)"
    )
    print(
        f"server RSS idle {idle / 1024**2:.0f} MB, peak during upload {max(samples) / 1024**2:.0f} MB"
    )
    subprocess.run(["rm", "-rf", str(data)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gigabytes", type=float, default=2.0)
    asyncio.run(main(parser.parse_args().gigabytes))
