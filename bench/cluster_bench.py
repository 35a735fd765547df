"""WADO-RS frames/s through one node and through two nodes sharing one index and one bucket.

    tests/with_postgres.sh tests/with_seaweedfs.sh python bench/cluster_bench.py \
        [--requests 2000] [-c 8] [--json out.json] [FILE.dcm ...]

Starts two ``tessera serve`` nodes (tests/cluster/cluster_nodes.py) on the PostgreSQL server and
the SeaweedFS bucket the wrappers export, stores the files by STOW-RS to the first node (by
default pydicom-data's 120-frame JPEG ultrasound cine), reads every frame once from each node
(so both chunk caches are warm), then times the same random frames at concurrency c: all to the
node that stored them, all to the other one, then round-robin to both. The load generator (Python, aiohttp) runs on the same machine
as the nodes, the same for both cases.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "cluster")]

import aiohttp  # noqa: E402
from cluster_nodes import Cluster, Node, missing_servers, running_cluster  # noqa: E402

from bench.dicomweb_bench import DICOM_JSON, FRAME_ACCEPT  # noqa: E402
from bench.s3_bench import summary, timed  # noqa: E402

NUMBER_OF_FRAMES = "00280008"


def default_files() -> list[Path]:
    from pydicom.data import get_testdata_file

    return [Path(get_testdata_file("color3d_jpeg_baseline.dcm"))]


async def stow(node: Node, auth: dict[str, str], files: list[Path]) -> None:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + path.read_bytes()
        + b"\r\n"
        for path in files
    )
    body += f"--{boundary}--\r\n".encode()
    headers = {
        **auth,
        **DICOM_JSON,
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(node.dicomweb + "/studies", data=body, headers=headers) as r,
    ):
        if r.status != 200:
            raise RuntimeError(f"STOW-RS to {node.name}: HTTP {r.status}: {await r.text()}")


async def frame_paths(node: Node, auth: dict[str, str]) -> list[str]:
    """Every frame's path below /dicomweb, found through QIDO-RS."""
    url = node.dicomweb + "/instances?includefield=" + NUMBER_OF_FRAMES
    async with (
        aiohttp.ClientSession(headers={**auth, **DICOM_JSON}) as session,
        session.get(url) as r,
    ):
        rows = await r.json(content_type=None) or []
    paths = []
    for row in rows:
        uids = [row[tag]["Value"][0] for tag in ("0020000D", "0020000E", "00080018")]
        count = int((row.get(NUMBER_OF_FRAMES, {}).get("Value") or [1])[0])
        prefix = "/studies/{}/series/{}/instances/{}/frames/".format(*uids)
        paths += [prefix + str(n) for n in range(1, count + 1)]
    return paths


async def frame_load(
    nodes: list[Node], auth: dict[str, str], paths: list[str], c: int, case: str
) -> dict:
    """Each path in turn, ``c`` at a time, the nodes taken round-robin."""
    sessions = [
        aiohttp.ClientSession(headers=auth, connector=aiohttp.TCPConnector(limit=c)) for _ in nodes
    ]
    turn = itertools.cycle(range(len(nodes)))
    try:

        async def frame(path: str) -> bytes:
            i = next(turn)
            url = nodes[i].dicomweb + path
            async with sessions[i].get(url, headers={"Accept": FRAME_ACCEPT}) as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url}: HTTP {r.status}")
                return body

        return summary(case, c, *await timed([lambda p=p: frame(p) for p in paths], c))
    finally:
        for session in sessions:
            await session.close()


async def bench(cluster: Cluster, args: argparse.Namespace) -> dict:
    a, b = cluster.nodes["node-a"], cluster.nodes["node-b"]
    auth = await asyncio.to_thread(cluster.bearer, "bench", "admin")
    files = args.files or default_files()
    await stow(a, auth, files)
    paths = await frame_paths(b, auth)
    for node in (a, b):  # warm both caches
        await frame_load([node], auth, paths, args.concurrency, "warm-up")
    rng = random.Random(7)
    load = [rng.choice(paths) for _ in range(args.requests)]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "files": [f.name for f in files],
        "frames": len(paths),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "one_node": await frame_load([a], auth, load, args.concurrency, "one node"),
        "other_node": await frame_load([b], auth, load, args.concurrency, "other node"),
        "two_nodes": await frame_load([a, b], auth, load, args.concurrency, "two nodes"),
        "load_average_end": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="DICOM files to serve frames of")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    reason = missing_servers()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    with running_cluster("node-a", "node-b") as cluster:
        result = asyncio.run(bench(cluster, args))
    print(f"{result['frames']} frames of {', '.join(result['files'])}; {result['cpus']} CPUs")
    print(f"{'case':12} {'c':>3} {'reads':>6} {'p50 ms':>8} {'p99 ms':>8} {'frames/s':>9}")
    for name in ("one_node", "other_node", "two_nodes"):
        r = result[name]
        print(
            f"{r['case']:12} {r['c']:>3} {r['reads']:>6} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['reads_per_s']:>9.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
