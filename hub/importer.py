"""`tessera import`: ingest files and folders through the one ingest path, with progress."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from hub.app import open_archive
from hub.archive import Source
from hub.config import Settings

CONCURRENCY = 4


def walk(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file())
        else:
            yield path


async def import_paths(settings: Settings, paths: list[Path]) -> int:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:  # before anything is stored: a typo should not import half a list
        print(f"tessera import: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    files = await asyncio.get_running_loop().run_in_executor(None, lambda: list(walk(paths)))
    archive = await open_archive(settings)
    counts = {"stored": 0, "duplicate": 0, "version": 0, "failed": 0}
    failures: list[str] = []
    warnings: list[str] = []
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for f in files:
        queue.put_nowait(f)
    bar = tqdm(total=len(files), unit="file", desc="import")

    async def worker() -> None:
        while not queue.empty():
            path = queue.get_nowait()
            try:
                result = await archive.ingest_file(path, source=Source("import"))
            except OSError as exc:  # vanished or unreadable since the walk
                counts["failed"] += 1
                failures.append(f"{path}: {exc.strerror or exc}")
                bar.update(1)
                continue
            counts[result.status] += 1
            if not result.ok:
                failures.append(f"{path}: {result.message}")
            warnings.extend(f"{path}: {w}" for w in result.warnings)
            bar.update(1)

    try:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    finally:
        bar.close()
        await archive.close()
    print(", ".join(f"{n} {k}" for k, n in counts.items()))
    for line in warnings:
        print(f"warning: {line}")
    for line in failures:
        print(f"failed: {line}")
    return 0 if not failures else 1
