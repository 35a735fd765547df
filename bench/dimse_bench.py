"""DIMSE benchmark: Tessera's SCP side by side with Orthanc, driven by the same dcmtk tools.

Two measurements per run:

  ingest   storescu of every file in DIR (one association, or --parallel N processes with
           one association each; files sent as they are: each file's own transfer syntax is
           proposed): instances/s and MB/s, RUNS times, each into a fresh archive
  find     findscu STUDY-level C-FIND, N times one after another: latency p50/p90 per query
           (process start and association included, the same for both systems)

for each system named (tessera: the SCP of hub.dimse on a fresh archive in this process;
orthanc: the Orthanc peer of /work/shared/peers/orthanc.sh, DICOM port 4242, AE ORTHANC,
restarted on an empty store per run; ceiling: dcmtk storescp discarding everything, the
transport limit of this machine at this moment). Runs alternate between the systems.

Default DIR: the 6-instance, 254 MB DICOM WSI pyramid of the peers' big slide (the data of the
Orthanc baseline in /work/shared/peers/README.md), made with wsidicomizer if missing.
Prints one JSON document (``--json OUT`` also writes it). Not a test: nothing is asserted.

    .venv/bin/python bench/dimse_bench.py tessera orthanc --runs 3
    .venv/bin/python bench/dimse_bench.py tessera orthanc ceiling --small 1000 --nodelay
    .venv/bin/python bench/dimse_bench.py tessera orthanc --small 1000 --nodelay --parallel 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydicom import dcmread

PEERS = Path("/work/shared/peers")
WORK = Path("/tmp/peers/dimse-bench")
BIG_SLIDE = Path("/tmp/peers/data/big-40000x30000.svs")
HOST = "127.0.0.1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def default_data() -> Path:
    folder = WORK / "wsi"
    if not any(folder.glob("*.dcm")):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["/tmp/peers/venv/bin/wsidicomizer", "-i", str(BIG_SLIDE), "-o", str(folder)],
            check=True,
        )
    return folder


def small_data(count: int) -> Path:
    """`count` CT slices (pydicom's CT_small, 38 KB) with fresh UIDs: 10 studies, one series
    each. Measures per-instance cost (association traffic, parse, index) rather than bytes."""
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder = WORK / f"ct-{count}"
    if len(list(folder.glob("*.dcm"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    for study in range(10):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.PatientID = f"BENCH{study}"
        for n in range(count // 10):
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = n + 1
            ds.save_as(folder / f"{study:02d}-{n:05d}.dcm")
    return folder


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm") if p.is_file())


def storescu_profile(files: list[Path], path: Path) -> Path:
    """storescu --config-file profile proposing each file's own (SOP class, syntax)."""
    pairs = set()
    for f in files:
        meta = dcmread(f, stop_before_pixels=True, specific_tags=[]).file_meta
        pairs.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    syntaxes = sorted({ts for _, ts in pairs})
    lines = ["[[TransferSyntaxes]]"]
    for i, ts in enumerate(syntaxes):
        lines += [f"[TS{i}]", f"TransferSyntax1 = {ts}"]
    lines += ["[[PresentationContexts]]", "[Exact]"]
    for n, (sop_class, ts) in enumerate(sorted(pairs), start=1):
        lines.append(f"PresentationContext{n} = {sop_class}\\TS{syntaxes.index(ts)}")
    lines += ["[[Profiles]]", "[Exact]", "PresentationContexts = Exact"]
    path.write_text("\n".join(lines) + "\n")
    return path


async def timed(*cmd: str) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return time.perf_counter() - t0, proc.returncode or 0, out.decode(errors="replace")


def ingest_row(files: list[Path], wall: float, rc: int, out: str) -> dict[str, Any]:
    size = sum(f.stat().st_size for f in files)
    return {
        "rc": rc,
        "wall_s": round(wall, 3),
        "instances": len(files),
        "bytes": size,
        "successes": out.count("(Success)"),
        "inst_per_s": round(len(files) / wall, 2),
        "MB_per_s": round(size / wall / 1e6, 1),
    }


async def store_all(
    files: list[Path], address: list[str], calling: str, parallel: int
) -> tuple[float, int, str]:
    """storescu of every file: one process, or `parallel` processes at once (one association
    each, contiguous slices of the files). Wall time until the last one is done."""
    size = -(-len(files) // parallel)
    slices = [files[i : i + size] for i in range(0, len(files), size)]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = storescu_profile(files, Path(tmp) / "exact.cfg")
        storescu = ["storescu", "-v", "-aet", calling, "--config-file", str(cfg), "Exact"]
        t0 = time.perf_counter()
        done = await asyncio.gather(
            *(timed(*storescu, *address, *map(str, part)) for part in slices)
        )
        wall = time.perf_counter() - t0
    return wall, max(rc for _, rc, _ in done), "".join(out for _, _, out in done)


async def store_and_find(
    files: list[Path], address: list[str], calling: str, finds: int, parallel: int = 1
) -> dict[str, Any]:
    wall, rc, out = await store_all(files, address, calling, parallel)
    row = ingest_row(files, wall, rc, out)
    latencies = []
    for _ in range(finds):
        t, rc_find, out_find = await timed(
            "findscu", "-S", "-aet", calling, "-k", "QueryRetrieveLevel=STUDY",
            "-k", "StudyInstanceUID", "-k", "PatientName", "-k", "ModalitiesInStudy", *address,
        )  # fmt: skip
        if rc_find != 0:
            raise RuntimeError(out_find)
        latencies.append(t * 1000)
    row["find_ms_p50"] = round(statistics.median(latencies), 1)
    row["find_ms_p90"] = round(statistics.quantiles(latencies, n=10)[-1], 1) if finds > 1 else None
    return row


async def tessera_run(files: list[Path], finds: int, parallel: int = 1) -> dict[str, Any]:
    """One run into a fresh archive, the SCP in this process (its own threads)."""
    import hub.worklist.model  # noqa: F401
    from hub.archive import Archive
    from hub.config import Settings
    from hub.dimse.config import DimseConfig
    from hub.dimse.service import DimseServer
    from hub.security.dimse_acl import allow_ae
    from hub.stores import open_store

    data = WORK / "tessera-data"
    await asyncio.to_thread(shutil.rmtree, data, True)
    settings = Settings(data_dir=data, dimse_port=0, ae_title="TESSERA")
    archive = await Archive.open(settings, store=open_store(settings))
    await allow_ae(archive.engine, "BENCHSCU", ["store", "find"], role="admin")
    server = DimseServer(archive, DimseConfig.from_settings(settings), asyncio.get_running_loop())
    await asyncio.to_thread(server.start)
    try:
        address = ["-aec", "TESSERA", HOST, str(server.port)]
        return await store_and_find(files, address, "BENCHSCU", finds, parallel)
    finally:
        await asyncio.to_thread(server.stop)
        await archive.close()


async def orthanc_run(files: list[Path], finds: int, parallel: int = 1) -> dict[str, Any]:
    """One run into a freshly wiped Orthanc."""
    for action in ("stop", "wipe", "start"):
        await asyncio.to_thread(orthanc, action)
    try:
        address = ["-aec", "ORTHANC", HOST, "4242"]
        return await store_and_find(files, address, "BENCHSCU", finds, parallel)
    finally:
        await asyncio.to_thread(orthanc, "stop")


async def ceiling_run(files: list[Path], finds: int, parallel: int = 1) -> dict[str, Any]:
    """dcmtk storescp discarding what it receives: the transport ceiling on this machine."""
    port = 11113
    proc = await asyncio.create_subprocess_exec(
        "storescp", "--ignore", "+xa", "-aet", "NULL", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(0.5)
    try:
        address = ["-aec", "NULL", HOST, str(port)]
        wall, rc, out = await store_all(files, address, "BENCHSCU", parallel)
        return ingest_row(files, wall, rc, out) | {"find_ms_p50": None}
    finally:
        proc.terminate()
        await proc.wait()


async def run_systems(
    systems: list[str], files: list[Path], runs: int, finds: int, parallel: int = 1
) -> dict[str, list[dict[str, Any]]]:
    """Runs alternate between the systems so that a busy machine hurts both alike."""
    one_run = {"tessera": tessera_run, "orthanc": orthanc_run, "ceiling": ceiling_run}
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    for _ in range(runs):
        for system in systems:
            rows[system].append(await one_run[system](files, finds, parallel))
    return rows


def orthanc(action: str) -> None:
    subprocess.run([str(PEERS / "orthanc.sh"), action], check=True, capture_output=True)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("wall_s", "inst_per_s", "MB_per_s", "find_ms_p50")
    return {
        k: statistics.median(r[k] for r in rows) if rows[0][k] is not None else None for k in keys
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("systems", nargs="+", choices=["tessera", "orthanc", "ceiling"])
    parser.add_argument("--data", type=Path, default=None, help="folder of .dcm files")
    parser.add_argument(
        "--small", type=int, default=0, help="instead: this many 38 KB CT slices (x10)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--finds", type=int, default=20)
    parser.add_argument(
        "--parallel", type=int, default=1, help="storescu processes at once (one association each)"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--nodelay",
        action="store_true",
        help="TCP_NODELAY=1 for storescu/findscu (dcmtk then sends small messages at once;"
        " without it every small C-STORE waits ~40 ms for the receiver's delayed ACK)",
    )
    args = parser.parse_args()
    folder = small_data(args.small) if args.small else args.data or default_data()
    files = files_of(folder)
    if args.nodelay:
        os.environ["TCP_NODELAY"] = "1"  # read by dcmtk in the child processes
    load_before = os.getloadavg()[0]
    rows = asyncio.run(run_systems(args.systems, files, args.runs, args.finds, args.parallel))
    doc = {
        "data": str(folder),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "client_tcp_nodelay": args.nodelay,
        "parallel_storescu": args.parallel,
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "median": {system: summary(r) for system, r in rows.items()},
        "runs": rows,
    }
    text = json.dumps(doc, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
