"""Audit appends a second with two nodes writing one chain on one PostgreSQL.

Two processes, each an ``AuditLog`` with a head anchor of its own (as two nodes on two machines),
append batches of BATCH records for SECONDS into one fresh database, under each way to keep them
from breaking the chain:

- ``lock``: the advisory lock ``audit_trail.hold_chain`` takes, so appenders queue;
- ``retry``: no lock; a clash on the sequence number is retried on the new head (the writer's
  only defence before the lock);
- ``apart``: each process into a database of its own, as a chain per node would be: the ceiling
  of what a chain-id column could give.

Each run ends with ``audit_trail.verify`` on the chain (with each process's head anchor) and a
count of the records against the number written. Not a test.

    tests/with_postgres.sh sh -c 'python bench/audit_bench.py --server "$TESSERA_TEST_POSTGRES"'
        [--seconds 10] [--batches 1 20] [--modes lock retry apart]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

KEY = bytes(range(32))
PROCESSES = 2


@dataclass
class Share:
    records: int = 0
    attempts: int = 0  # transactions tried; beyond one per batch, each is a retry
    batches: int = 0
    failed: int = 0  # batches given up after write()'s own retries
    latencies: list[float] | None = None


def _entry(worker: int, n: int) -> dict:
    return {
        "at": round(time.time(), 6),
        "who": f"node{worker}",
        "role": "bench",
        "action": "instance.stored",
        "outcome": "success",
        "patient": "P1",
        "study": f"1.2.3.{n}",
        "source": "127.0.0.1",
        "detail": '{"sop_uid":"1.2.3.4.5.6.7.8.9"}',
    }


async def _append_for(url: str, head: Path, worker: int, batch: int, seconds: float,
                      start_at: float, lock: bool) -> Share:  # fmt: skip
    from hub.archive.index import make_engine
    from hub.security import audit_trail

    if not lock:

        async def no_lock(conn) -> None:
            return None

        audit_trail.hold_chain = no_lock  # the writer as it was before the lock
    engine = make_engine(url)
    log = audit_trail.AuditLog(engine, KEY, head)
    share = Share(latencies=[])
    counted = log._append

    async def counting(entries):
        share.attempts += 1
        return await counted(entries)

    log._append = counting  # type: ignore[method-assign]
    async with engine.connect() as conn:  # open the pool before the clock starts
        await conn.exec_driver_sql("SELECT 1")
    await asyncio.sleep(max(0.0, start_at - time.time()))
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        entries = [_entry(worker, n + i) for i in range(batch)]
        began = time.perf_counter()
        try:
            await log.write(entries)
        except Exception:  # noqa: BLE001 - counted: the writer would keep and retry them
            share.failed += 1
        else:
            share.records += batch
            share.latencies.append(time.perf_counter() - began)
        share.batches += 1
        n += batch
    await engine.dispose()
    return share


def _worker(args: tuple) -> Share:
    return asyncio.run(_append_for(*args))


async def _database(server: str) -> str:
    import asyncpg

    name = f"audit_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server.rstrip("/") + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = server.replace("postgresql://", "postgresql+asyncpg://").rstrip("/") + f"/{name}"
    from hub.archive.index import create_schema, make_engine

    engine = make_engine(url)
    await create_schema(engine)
    await engine.dispose()
    return url


async def _check(url: str, heads: list[Path], expected: int) -> str:
    from hub.archive.index import make_engine
    from hub.security import audit_trail

    engine = make_engine(url)
    try:
        problems = []
        for head in heads:
            verdict = await audit_trail.verify(engine, KEY, head)
            problems += verdict.problems
            if verdict.records != expected:
                problems.append(f"{verdict.records} records, {expected} written")
    finally:
        await engine.dispose()
    return "intact" if not problems else "; ".join(sorted(set(problems)))[:200]


def run(server: str, mode: str, batch: int, seconds: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    heads = [folder / f"node{i}" / "audit.head" for i in range(PROCESSES)]
    urls = [asyncio.run(_database(server))]
    urls *= PROCESSES
    if mode == "apart":
        urls = [asyncio.run(_database(server)) for _ in range(PROCESSES)]
    start_at = time.time() + 1.0
    jobs = [(urls[i], heads[i], i, batch, seconds, start_at, mode == "lock")
            for i in range(PROCESSES)]  # fmt: skip
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        shares = pool.map(_worker, jobs)
    records = sum(s.records for s in shares)
    if mode == "apart":
        verdicts = {
            asyncio.run(_check(u, [h], s.records))
            for u, h, s in zip(urls, heads, shares, strict=True)
        }
        verdict = "; ".join(sorted(verdicts))
    else:
        verdict = asyncio.run(_check(urls[0], heads, records))
    latencies = sorted(x for s in shares for x in s.latencies or [])
    batches = sum(s.batches for s in shares)
    return {
        "mode": mode,
        "batch": batch,
        "appends_s": records / seconds,
        "retries_per_batch": (sum(s.attempts for s in shares) - batches) / max(batches, 1),
        "failed": sum(s.failed for s in shares),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
        "verify": verdict,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True, help="postgresql://user@host:port/")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--modes", nargs="+", default=["lock", "retry", "apart"])
    args = parser.parse_args()
    print(f"{PROCESSES} processes, {args.seconds:g} s each run")
    print(
        "| mode | batch | appends/s | retries/batch | failed batches | p50 ms | p99 ms | verify |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for batch in args.batches:
        for mode in args.modes:
            r = run(args.server, mode, batch, args.seconds)
            print(f"| {r['mode']} | {r['batch']} | {r['appends_s']:.0f} | "
                  f"{r['retries_per_batch']:.2f} | {r['failed']} | {r['p50_ms']:.1f} | "
                  f"{r['p99_ms']:.1f} | {r['verify']} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
