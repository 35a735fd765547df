"""Slide conversion side by side: Tessera vs wsidicomizer vs OrthancWSIDicomizer vs plain cp.

Tessera is timed as users run it: the `tessera convert` console script of the Python running this
script, importing this checkout (PYTHONPATH), with its progress bar off as the peers print none.
Not a test. Needs the peers from `bash ../shared/peers/setup.sh` (inputs in /tmp/peers/data, the
wsidicomizer venv, OrthancWSIDicomizer, /usr/bin/time). Every (slide, tool) pair runs RUNS times,
interleaved so that load from other processes hits all tools alike, each into a fresh folder, under
`/usr/bin/time -v` (wall, CPU, peak RSS of the largest process, as the peers' baseline was taken)
while psutil samples (every 0.1 s) the summed PSS of the whole process tree (workers included; PSS because
forked workers share their parent's pages, which summed RSS would count twice).

    python bench/convert_bench.py [--runs 3] [--slides small ndpi big] [--tools ...] [--append]

--append adds a dated section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

DATA = Path("/tmp/peers/data")
OUT = Path("/tmp/peers/out-tessera-bench")
PEERS_VENV = Path("/tmp/peers/venv/bin")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SLIDES = {
    "small": DATA / "CMU-1-Small-Region.svs",
    "ndpi": DATA / "test3-DAPI-2-387.ndpi",
    "big": DATA / "big-40000x30000.svs",
}
TOOLS = [
    "cp",
    "tessera",
    "tessera-reencode",
    "tessera-reencode-420",
    "tessera-reencode-420-q80",
    "python-m-wsi",
    "wsidicomizer",
    "wsidicomizer-tx",
    "orthanc",
    "orthanc-reencode",
]
REPO = Path(__file__).resolve().parents[1]
TESSERA = Path(sys.executable).with_name("tessera")  # the console script users run


def command(tool: str, src: Path, out: Path) -> list[str]:
    tessera = [str(TESSERA), "convert", str(src), "--out", str(out), "--quiet"]
    orthanc = ["OrthancWSIDicomizer", "--threads=2", f"--folder={out}"]
    if src.suffix == ".ndpi":
        orthanc.append(f"--openslide={_libopenslide()}")
    return {
        "cp": ["cp", str(src), str(out)],
        "tessera": tessera,
        "tessera-reencode": [*tessera, "--codec", "jpeg"],
        "tessera-reencode-420": [*tessera, "--codec", "jpeg", "--jpeg-mode", "ycbcr420"],
        # wsidicomizer's own re-encoding settings (JPEG q80, 4:2:0): the like-for-like row.
        "tessera-reencode-420-q80": [
            *tessera,
            *("--codec", "jpeg", "--jpeg-mode", "ycbcr420", "--quality", "80"),
        ],
        # The library's own command, without the hub: what `tessera convert` should match.
        "python-m-wsi": [
            sys.executable,
            "-m",
            "wsi",
            "convert",
            str(src),
            "--out",
            str(out),
            "--quiet",
        ],
        "wsidicomizer": [str(PEERS_VENV / "wsidicomizer"), "-i", str(src), "-o", str(out)],
        "wsidicomizer-tx": [
            str(PEERS_VENV / "wsidicomizer"),
            "-i",
            str(src),
            "-o",
            str(out),
            "--force-transcoding",
        ],
        "orthanc": [*orthanc, str(src)],
        "orthanc-reencode": [*orthanc, "--reencode=1", str(src)],
    }[tool]


def _libopenslide() -> str:
    files = subprocess.run(["dpkg", "-L", "libopenslide0"], capture_output=True, text=True).stdout
    return next(line for line in files.splitlines() if line.endswith("libopenslide.so.0"))


@dataclass
class Run:
    tool: str
    slide: str
    rc: int
    wall: float
    cpu: float
    max_rss_mb: float  # largest single process (/usr/bin/time -v)
    tree_pss_mb: float  # proportional set size summed over the process tree, sampled every 0.1 s
    out_mb: float
    files: int


def run_once(tool: str, slide: str, n: int) -> Run:
    src = SLIDES[slide]
    out = OUT / f"{tool}-{slide}-r{n}"
    shutil.rmtree(out, ignore_errors=True)
    if tool in ("cp", "orthanc", "orthanc-reencode"):
        out.mkdir(parents=True)
    timing = OUT / f"{tool}-{slide}-r{n}.time"
    cmd = ["/usr/bin/time", "-v", "-o", str(timing), *command(tool, src, out)]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO)}
    proc = psutil.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO
    )
    tree_peak = 0
    while proc.poll() is None:
        tree_peak = max(tree_peak, _tree_rss(proc))
        time.sleep(0.1)  # reading smaps is not free: sample sparingly
    stats = _parse_time(timing.read_text())
    files = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    run = Run(
        tool=tool,
        slide=slide,
        rc=proc.returncode,
        wall=stats["wall"],
        cpu=stats["cpu"],
        max_rss_mb=stats["rss_kb"] / 1024,
        tree_pss_mb=tree_peak / 2**20,
        out_mb=sum(p.stat().st_size for p in files) / 2**20,
        files=len(files),
    )
    shutil.rmtree(out, ignore_errors=True)  # hundreds of MB per run otherwise pile up in /tmp
    return run


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        if p.pid == proc.pid:
            continue  # /usr/bin/time itself
        with contextlib.suppress(psutil.Error):
            total += p.memory_full_info().pss
    return total


def _parse_time(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Elapsed (wall clock) time (h:mm:ss or m:ss)":
            seconds = 0.0
            for part in value.split(":"):
                seconds = seconds * 60 + float(part)
            out["wall"] = seconds
        elif key in ("User time (seconds)", "System time (seconds)"):
            out["cpu"] = out.get("cpu", 0.0) + float(value)
        elif key == "Maximum resident set size (kbytes)":
            out["rss_kb"] = float(value)
    return out


def table(runs: list[Run]) -> str:
    lines = [
        "| slide | tool | wall s median (min-max) | CPU s | peak RSS MB, largest process "
        "| peak PSS MB, process tree | output MB | files | failed runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r.slide, r.tool) for r in runs}, key=lambda k: (k[0], TOOLS.index(k[1])))
    for slide, tool in keys:
        rs = [r for r in runs if (r.slide, r.tool) == (slide, tool)]
        ok = [r for r in rs if r.rc == 0] or rs
        walls = [r.wall for r in ok]
        lines.append(
            f"| {slide} | {tool} | {statistics.median(walls):.2f} ({min(walls):.2f}-"
            f"{max(walls):.2f}) | {statistics.median(r.cpu for r in ok):.2f} "
            f"| {statistics.median(r.max_rss_mb for r in ok):.0f} "
            f"| {statistics.median(r.tree_pss_mb for r in ok):.0f} "
            f"| {statistics.median(r.out_mb for r in ok):.1f} | {ok[0].files} "
            f"| {sum(r.rc != 0 for r in rs)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slides", nargs="+", choices=list(SLIDES), default=list(SLIDES))
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=TOOLS)
    parser.add_argument("--append", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    missing = [str(SLIDES[s]) for s in args.slides if not SLIDES[s].exists()]
    if not TESSERA.exists():
        missing.append(f"{TESSERA} (pip install -e . into this Python's environment)")
    if missing:
        print(f"missing {missing}: run `bash ../shared/peers/setup.sh` first", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    runs = []
    for slide in args.slides:
        for n in range(1, args.runs + 1):
            for tool in args.tools:
                run = run_once(tool, slide, n)
                runs.append(run)
                print(
                    f"{slide:6} {tool:20} r{n} rc={run.rc} {run.wall:6.2f}s cpu {run.cpu:6.2f}s "
                    f"rss {run.max_rss_mb:5.0f}/{run.tree_pss_mb:5.0f} MB {run.out_mb:7.1f} MB",
                    flush=True,
                )
    load_after = os.getloadavg()
    report = table(runs)
    print(report)
    if args.append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = (
            f"\n## Slide conversion, {stamp}\n\n"
            f"`python bench/convert_bench.py --runs {args.runs} --slides {' '.join(args.slides)}"
            f" --tools {' '.join(args.tools)} --append` (Tessera: `tessera convert`);"
            f" {os.cpu_count()} cores; load average before {load_before[0]:.1f}, "
            f"after {load_after[0]:.1f} (other processes shared the machine).\n\n{report}\n"
        )
        with RESULTS.open("a") as fh:
            fh.write(section)
    return 0 if all(r.rc == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
