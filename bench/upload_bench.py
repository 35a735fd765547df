"""Chunked upload benchmark: a multi-GB file through /api/uploads, with the server's memory.

Runs the whole hub in a child process on 127.0.0.1 (so its memory is measured alone), uploads a
file of --gib GiB in the server's chunk size with aiohttp (the file is read one chunk at a time),
then completes it: the file is not DICOM, so a conversion job starts and fails with a reason,
which is also checked. Prints throughput and the server's peak RSS growth (sampled every 50 ms).

    python -m bench.upload_bench --gib 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import psutil

SERVER = """
import asyncio, sys
from pathlib import Path
from aiohttp import web
from hub.app import build_app
from hub.app_keys import ARCHIVE_KEY
from hub.config import Settings
from hub.security.accounts import create_user, issue_token

async def main(data, port):
    settings = Settings(data_dir=Path(data), port=port, max_upload_bytes=64 * 1024**3)
    app = await build_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await create_user(app[ARCHIVE_KEY].engine, "bench", "clinic", None)
    _, secret = await issue_token(app[ARCHIVE_KEY].engine, "bench")
    print("TOKEN", secret, flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)


async def send_file(http: aiohttp.ClientSession, path: Path, filename: str) -> tuple[dict, float]:
    """Upload ``path`` in the server's chunk size and complete it: (the job, upload seconds)."""
    size = path.stat().st_size
    async with http.post("/api/uploads", json={"filename": filename, "size": size}) as r:
        created = await r.json()
    chunk = created["chunk_size"]
    started = time.perf_counter()
    with open(path, "rb") as f:
        for offset in range(0, size, chunk):
            data = f.read(chunk)
            url = f"/api/uploads/{created['id']}?offset={offset}"
            async with http.put(url, data=data) as r:
                assert r.status == 200, await r.text()
    seconds = time.perf_counter() - started
    async with http.post(f"/api/uploads/{created['id']}/complete") as r:
        return (await r.json())["job"], seconds


async def upload(base: str, token: str, path: Path) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        job, seconds = await send_file(http, path, "big.svs")
        while not job["finished"]:
            await asyncio.sleep(0.5)
            async with http.get(f"/api/jobs/{job['id']}") as r:
                job = await r.json()
    return {"seconds": seconds, "job_status": job["status"], "job_error": job["error"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0)
    args = parser.parse_args()
    size = int(args.gib * 1024**3) >> 20 << 20
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "big.bin"
        make_file(source, size)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(Path(tmp) / "data"), str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            token = ""
            while not token:  # the hub prints its first-start notices before
                line = server.stdout.readline()
                if not line:
                    raise SystemExit("the hub did not start")
                if line.startswith("TOKEN "):
                    token = line.split()[1]
            process = psutil.Process(server.pid)
            baseline = process.memory_info().rss
            peak = [baseline]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.05):
                    peak[0] = max(peak[0], process.memory_info().rss)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            result = asyncio.run(upload(f"http://127.0.0.1:{port}", token, source))
            done.set()
            sampler.join()
        finally:
            server.terminate()
            server.wait(10)
    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "bytes": size,
        "upload_s": round(result["seconds"], 2),
        "upload_mb_per_s": round(size / 2**20 / result["seconds"], 1),
        "server_rss_baseline_mb": round(baseline / 2**20),
        "server_rss_peak_growth_mb": round((peak[0] - baseline) / 2**20),
        "job_status": result["job_status"],
        "job_error": result["job_error"],
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
