"""Start-up time of the `tessera` command beside a bare interpreter and wsidicomizer's.

Each command runs RUNS times, interleaved so that load from other processes hits them alike,
as a fresh process with its output discarded; the figure is the wall time from spawn to exit.
Not a test.

    python bench/cli_bench.py [--runs 15] [--append]

--append adds a dated section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TESSERA = str(Path(sys.executable).with_name("tessera"))
WSIDICOMIZER = "/tmp/peers/venv/bin/wsidicomizer"


def commands() -> dict[str, list[str]]:
    found = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "tessera --help": [TESSERA, "--help"],
        "tessera convert --help": [TESSERA, "convert", "--help"],
        "tessera db current --help": [TESSERA, "db", "current", "--help"],
    }
    if shutil.which(WSIDICOMIZER):
        found["wsidicomizer --help"] = [WSIDICOMIZER, "--help"]
    return found


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def measure(runs: int) -> dict[str, list[float]]:
    cmds = commands()
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, argv in cmds.items():
            times[name].append(time_once(argv))
    return times


def table(times: dict[str, list[float]]) -> str:
    rows = ["| command | wall ms median (min-max) |", "|---|---|"]
    for name, ts in times.items():
        ms = [t * 1000 for t in ts]
        rows.append(f"| `{name}` | {statistics.median(ms):.0f} ({min(ms):.0f}-{max(ms):.0f}) |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--append", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    result = table(measure(args.runs))
    print(result)
    if args.append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with RESULTS.open("a") as f:
            f.write(
                f"\n## Command start-up, {stamp}\n\n"
                f"Load average {load:.2f} at the start, {args.runs} runs each, interleaved.\n"
                f"`.venv/bin/python bench/cli_bench.py --runs {args.runs}`\n\n{result}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
