"""Ranged-read latency from S3 (SeaweedFS on loopback), cold and through the warm chunk cache.

    python bench/s3_bench.py [--size-mb 64] [--reads 300] [-c 1 8] [--json out.json]

Starts its own ``weed mini`` (tests/s3_server.py) unless TESSERA_S3_* name a server, uploads
one random object through ``S3BlobStore.put`` (multipart, SHA-256 checked), then times:

- ``s3 cold``: each read a ranged GET straight to S3, at aligned 1 MiB chunks never read before
  (each chunk once) and at random 32 KiB ranges;
- ``cache warm``: the same reads through ``ChunkCache`` after every chunk has been read once.

With ``-c N`` the reads go N at a time; latency is per read, throughput over the whole batch.
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

from s3_server import SeaweedS3, from_environment, running, unique_prefix  # noqa: E402

from hub.archive.blobs.cache import CacheSettings, ChunkCache  # noqa: E402
from hub.archive.blobs.protocol import CHUNK  # noqa: E402
from hub.archive.blobs.s3 import S3BlobStore, S3Settings  # noqa: E402

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
    settings = S3Settings(
        endpoint=s3.endpoint,
        bucket=s3.bucket,
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        region=s3.region,
        prefix=unique_prefix(),
        allow_http=True,
    )
    store = S3BlobStore(settings, work / "spool")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
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
