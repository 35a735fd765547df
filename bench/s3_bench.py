"""Ranged-read latency from S3 (SeaweedFS on loopback), cold and through the warm chunk cache.

    python bench/s3_bench.py [--size-mb 64] [--reads 300] [-c 1 8] [--json out.json]

Starts its own ``weed mini`` (tests/s3_server.py) unless TESSERA_S3_* name a server, uploads
one random object through ``S3BlobStore.put`` (multipart, SHA-256 checked), then times:

- ``s3 cold``: each read a ranged GET straight to S3, at aligned 1 MiB chunks never read before
  (each chunk once) and at random 32 KiB ranges;
- ``cache warm``: the same reads through ``ChunkCache`` after every chunk has been read once.

With ``-c N`` the reads go N at a time; latency is per read, throughput over the whole batch.

    python bench/s3_bench.py --serve SLIDE_DIR [--requests 1500] [-c 8] [--json out.json]

Through ``tessera serve``, with a converted slide (``tessera convert --out SLIDE_DIR``): STOW-RS
MB/s of its files into the local store and into S3 (twice: into the fresh SeaweedFS, and from a
second hub on another prefix into the service that holds objects by then), then random WADO-RS frames of its level 0
at concurrency c (frames/s, p50/p99) from the local store, from S3 warm (the cache filled at
ingest) and from S3 cold (the cache off, TESSERA_CACHE_BYTES=0: every frame a ranged GET of
its 1 MiB chunk), and warm again in a hub restarted after the cold run. The load generator is Python (aiohttp) on the same machine, the same for the
three cases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aiohttp  # noqa: E402
from s3_server import SeaweedS3, bucket_settings, from_environment, running, unique_prefix  # noqa: E402

from bench.dicomweb_bench import (  # noqa: E402
    DICOM_JSON,
    FRAME_ACCEPT,
    TesseraServer,
    _instance_url,
    _level0,
    stow,
)
from hub.archive.blobs.cache import CacheSettings, ChunkCache  # noqa: E402
from hub.archive.blobs.protocol import CHUNK  # noqa: E402
from hub.archive.blobs.s3 import S3BlobStore  # noqa: E402

SMALL = 32 << 10


@contextlib.contextmanager
def server() -> Iterator[SeaweedS3]:
    exported = from_environment()
    if exported:
        yield exported
        return
    with running() as started:
        yield started


async def timed(
    reads: list[Callable[[], Awaitable[bytes]]], concurrency: int
) -> tuple[list[float], float]:
    """Per-read latencies (ms) and the wall time (s) of running ``reads`` N at a time."""
    latencies: list[float] = []
    queue = iter(reads)

    async def worker() -> None:
        for read in queue:
            start = time.perf_counter()
            await read()
            latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


def summary(name: str, concurrency: int, latencies: list[float], wall: float) -> dict:
    ordered = sorted(latencies)
    return {
        "case": name,
        "c": concurrency,
        "reads": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "reads_per_s": round(len(ordered) / wall, 1),
    }


async def bench(args: argparse.Namespace, s3: SeaweedS3, work: Path) -> list[dict]:
    store = S3BlobStore(bucket_settings(s3), work / "spool")
    size = args.size_mb << 20
    spool = store.spool()
    for _ in range(args.size_mb):
        spool.write(os.urandom(1 << 20))
    sha, _ = spool.finish()
    start = time.perf_counter()
    await store.put(spool)
    upload_s = time.perf_counter() - start
    print(f"uploaded {args.size_mb} MiB in {upload_s:.2f} s ({args.size_mb / upload_s:.0f} MiB/s)")

    rng = random.Random(7)
    chunks = list(range(size // CHUNK))
    results = []
    for c in args.concurrency:
        cache = ChunkCache(store, CacheSettings(work / f"cache-{c}", max_bytes=2 * size))
        # Cold: chunks in a fresh order, each read once per run.
        order = rng.sample(chunks, min(args.reads, len(chunks)))
        cold = [lambda i=i: store.read_range(sha, i * CHUNK, CHUNK) for i in order]
        results.append(summary("s3 cold, 1 MiB chunk", c, *await timed(cold, c)))
        small = [rng.randrange(size - SMALL) for _ in range(args.reads)]
        cold_small = [lambda o=o: store.read_range(sha, o, SMALL) for o in small]
        results.append(summary("s3 cold, 32 KiB range", c, *await timed(cold_small, c)))
        for i in chunks:  # warm every chunk
            await cache.read_range(sha, i * CHUNK, 1)
        warm = [lambda i=i, cache=cache: cache.read_range(sha, i * CHUNK, CHUNK) for i in order]
        results.append(summary("cache warm, 1 MiB chunk", c, *await timed(warm, c)))
        warm_small = [lambda o=o, cache=cache: cache.read_range(sha, o, SMALL) for o in small]
        results.append(summary("cache warm, 32 KiB range", c, *await timed(warm_small, c)))
    await store.delete(sha)
    return results


async def frame_load(base: str, token: str | None, requests: int, c: int, case: str) -> dict:
    """``requests`` random frames of the slide's level 0, ``c`` at a time. The writes of the
    upload before are flushed first (``sync``), so that their writeback does not compete with
    the reads measured here, for the local store as for S3."""
    await asyncio.to_thread(os.sync)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    connector = aiohttp.TCPConnector(limit=c)
    async with aiohttp.ClientSession(headers=auth, connector=connector) as session:
        level0 = await _level0(session, base, DICOM_JSON)
        prefix = _instance_url(base, level0) + "/frames/"
        rng = random.Random(11)

        async def frame(n: int) -> bytes:
            async with session.get(prefix + str(n), headers={"Accept": FRAME_ACCEPT}) as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"frame {n}: HTTP {r.status}")
                return body

        numbers = [rng.randrange(1, level0["frames"] + 1) for _ in range(requests)]
        reads = [lambda n=n: frame(n) for n in numbers]
        return summary(case, c, *await timed(reads, c))


def serve_bench(args: argparse.Namespace, s3: SeaweedS3, work: Path) -> dict:
    files = sorted(args.serve.glob("*.dcm"))
    port = args.port
    result: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "load_average_start": os.getloadavg(),
    }
    c = args.concurrency[-1]
    with TesseraServer(work / "local", port) as hub:
        result["stow_local"] = asyncio.run(stow(hub.base, files, hub.token))
        result["frames_local"] = asyncio.run(
            frame_load(hub.base, hub.token, args.requests, c, "local")
        )
    env = {
        "TESSERA_STORAGE_BACKEND": "s3",
        "TESSERA_S3_ENDPOINT": s3.endpoint,
        "TESSERA_S3_BUCKET": s3.bucket,
        "TESSERA_S3_ACCESS_KEY_ID": s3.access_key,
        "TESSERA_S3_SECRET_ACCESS_KEY": s3.secret_key,
        "TESSERA_S3_REGION": s3.region,
        "TESSERA_S3_PREFIX": unique_prefix(),
    }
    with TesseraServer(work / "s3", port, env=env) as hub:
        result["stow_s3"] = asyncio.run(stow(hub.base, files, hub.token))
        result["frames_s3_warm"] = asyncio.run(
            frame_load(hub.base, hub.token, args.requests, c, "s3 warm")
        )
    # A second hub, on another prefix, into the service that now holds objects: a fresh
    # SeaweedFS allocates its volumes during the first upload, a running service has them.
    again = {**env, "TESSERA_S3_PREFIX": unique_prefix()}
    with TesseraServer(work / "s3-again", port, env=again) as hub:
        result["stow_s3_again"] = asyncio.run(stow(hub.base, files, hub.token))
    cold = {**env, "TESSERA_CACHE_BYTES": "0"}
    with TesseraServer(work / "s3", port, env=cold, fresh=False) as hub:
        result["frames_s3_cold"] = asyncio.run(
            frame_load(hub.base, hub.token, args.requests, c, "s3 cold")
        )
    # Warm again after the cold run, in a restarted hub: the same conditions as the cold run.
    with TesseraServer(work / "s3", port, env=env, fresh=False) as hub:
        result["frames_s3_warm_restarted"] = asyncio.run(
            frame_load(hub.base, hub.token, args.requests, c, "s3 warm, restarted")
        )
    result["load_average_end"] = os.getloadavg()
    return result


def print_serve(r: dict) -> None:
    print(f"{r['files']} files, {r['bytes'] / 1e6:.0f} MB; load {r['load_average_start']}")
    for name in ("stow_local", "stow_s3", "stow_s3_again"):
        print(f"{name:16} {r[name]['MB_per_s']:>8.1f} MB/s  ok={r[name]['ok']}")
    print(f"{'frames':20} {'c':>3} {'reads':>6} {'p50 ms':>8} {'p99 ms':>8} {'frames/s':>9}")
    for name in ("frames_local", "frames_s3_warm", "frames_s3_cold", "frames_s3_warm_restarted"):
        f = r[name]
        print(
            f"{f['case']:20} {f['c']:>3} {f['reads']:>6} {f['p50_ms']:>8.2f} "
            f"{f['p99_ms']:>8.2f} {f['reads_per_s']:>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", type=Path, help="a converted slide's folder: bench the hub")
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--port", type=int, default=18490)
    args = parser.parse_args()
    if args.serve:
        with server() as s3, tempfile.TemporaryDirectory(prefix="s3-bench-") as work:
            served = serve_bench(args, s3, Path(work))
        print_serve(served)
        if args.json:
            args.json.write_text(json.dumps(served, indent=2))
        return
    with server() as s3, tempfile.TemporaryDirectory(prefix="s3-bench-") as work:
        results = asyncio.run(bench(args, s3, Path(work)))
    print(f"{'case':28} {'c':>3} {'reads':>6} {'p50 ms':>8} {'p99 ms':>8} {'reads/s':>9}")
    for r in results:
        print(
            f"{r['case']:28} {r['c']:>3} {r['reads']:>6} {r['p50_ms']:>8.3f} "
            f"{r['p99_ms']:>8.3f} {r['reads_per_s']:>9.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
