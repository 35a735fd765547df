"""The S3 range benchmark runs end to end on a small object. No timing is asserted here:
figures go to bench/RESULTS.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from s3_server import SeaweedS3

from bench.s3_bench import bench, summary


def test_summary_percentiles() -> None:
    row = summary("case", 8, [float(n) for n in range(1, 101)], wall=2.0)
    assert row == {
        "case": "case",
        "c": 8,
        "reads": 100,
        "p50_ms": 50.5,
        "p99_ms": 100.0,
        "reads_per_s": 50.0,
    }


async def test_the_benchmark_runs_on_a_small_object(seaweedfs: SeaweedS3, tmp_path: Path) -> None:
    args = argparse.Namespace(size_mb=3, reads=4, concurrency=[1, 2])
    rows = await bench(args, seaweedfs, tmp_path)
    assert [(r["case"], r["c"]) for r in rows] == [
        (case, c)
        for c in (1, 2)
        for case in (
            "s3 cold, 1 MiB chunk",
            "s3 cold, 32 KiB range",
            "cache warm, 1 MiB chunk",
            "cache warm, 32 KiB range",
        )
    ]
    assert all(r["reads"] in (3, 4) and r["p99_ms"] >= r["p50_ms"] > 0 for r in rows)
