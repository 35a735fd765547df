"""`make bench`: run every benchmark script in bench/, one after another.

Each script runs in its own process with a time limit, so that one that is missing, fails or
lacks its peers (Orthanc, nginx, wrk, the synthetic slide from ../shared/peers/setup.sh) is
reported and the others still run. Nothing here asserts a speed: the figures go to the
terminal and, dated, into bench/RESULTS.md by each script's own append option or by hand.

    .venv/bin/python -m bench.run [--only dicomweb dimse ...] [--list] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


@dataclass(frozen=True)
class Bench:
    name: str
    script: str  # file in bench/
    args: tuple[str, ...] = ()
    needs: tuple[str, ...] = field(default=())  # programs that must be on PATH
    inputs: tuple[str, ...] = field(default=())  # files that ../shared/peers/setup.sh makes


# The known scripts and the arguments of their usual run. Any other bench/*_bench.py found is
# run with no arguments.
PEER_SLIDE = "/tmp/peers/data/big-40000x30000.svs"
WSIDICOMIZER = "/tmp/peers/venv/bin/wsidicomizer"
KNOWN = (
    Bench(
        "dicomweb",
        "dicomweb_bench.py",
        ("all",),
        needs=("wrk",),
        inputs=(PEER_SLIDE, WSIDICOMIZER),
    ),
    Bench("dimse", "dimse_bench.py", ("tessera",), needs=("storescu", "findscu")),
    Bench("dimse-orthanc", "dimse_bench.py", ("orthanc",), needs=("storescu", "Orthanc")),
    Bench("convert", "convert_bench.py", inputs=(PEER_SLIDE, WSIDICOMIZER)),
    Bench("telehealth", "telehealth_bench.py"),
    Bench("stow-memory", "stow_memory.py"),
)


def discover() -> list[Bench]:
    known_scripts = {b.script for b in KNOWN}
    extra = [
        Bench(p.stem.removesuffix("_bench"), p.name)
        for p in sorted(BENCH.glob("*_bench.py"))
        if p.name not in known_scripts
    ]
    return [*KNOWN, *extra]


def run(bench: Bench, timeout: float) -> tuple[str, float]:
    script = BENCH / bench.script
    if not script.exists():
        return "skipped: script not present", 0.0
    missing = [p for p in bench.needs if shutil.which(p) is None]
    missing += [p for p in bench.inputs if not Path(p).exists()]
    if missing:
        return f"skipped: needs {', '.join(missing)} (bash ../shared/peers/setup.sh)", 0.0
    start = time.monotonic()
    cmd = [sys.executable, "-m", f"bench.{script.stem}", *bench.args]
    print(f"\n=== {bench.name}: python {' '.join(cmd[1:])}", flush=True)
    try:
        done = subprocess.run(cmd, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"stopped after {timeout:.0f} s", time.monotonic() - start
    status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
    return status, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", help="names to run (see --list)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per script, seconds")
    args = parser.parse_args(argv)
    benches = discover()
    if args.list:
        for b in benches:
            present = "" if (BENCH / b.script).exists() else "  (not present)"
            print(f"{b.name:14} {b.script} {' '.join(b.args)}{present}")
        return 0
    if args.only:
        unknown = set(args.only) - {b.name for b in benches}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        benches = [b for b in benches if b.name in args.only]
    outcomes = [(b, *run(b, args.timeout)) for b in benches]
    print("\n=== summary")
    for bench, status, seconds in outcomes:
        print(f"{bench.name:14} {status:60} {seconds:7.0f} s")
    return 1 if any(s.startswith(("failed", "stopped")) for _, s, _ in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
