"""DICOMweb benchmark: Tessera side by side with Orthanc and a static file server.

Subcommands (each prints one JSON document; `--json OUT` also writes it):

  stow BASE FILE...      STOW-RS, one instance per request, one after another:
                         instances/s and MB/s (files are read from disk inside the timing)
  find BASE              QIDO-RS /studies latency, the level-0 (largest) VL WSI instance and
                         its /metadata latency
  frames BASE            random WADO-RS frames of the level-0 instance under wrk at the given
                         concurrency levels: frames/s, p50/p90/p99 latency
  extract FILE DIR       write each frame of a DICOM file to DIR/<n> (for the static server)
  static DIR             serve DIR with nginx on 127.0.0.1 and load it with wrk (random tiles):
                         the practical upper limit for the same bytes

A Python load generator on the same two cores would be the bottleneck, hence wrk (Debian) with a
Lua script that picks a random frame per request. Every request binds to 127.0.0.1 and every loop
is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
DICOM_JSON = {"Accept": "application/dicom+json"}
WSI_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.6"
NON_VOLUME = ("LABEL", "OVERVIEW", "THUMBNAIL")
READ_CHUNK = 1 << 20

WRK_SCRIPT = """
local prefix = "%(prefix)s"
local count = %(count)d
local suffix = "%(suffix)s"
wrk.headers["Accept"] = '%(accept)s'
%(auth)s
math.randomseed(%(seed)d)
request = function()
  return wrk.format("GET", prefix .. math.random(1, count) .. suffix)
end
"""


# -- helpers -----------------------------------------------------------------
def _value(item: dict, tag: str, default: Any = None) -> Any:
    values = item.get(tag, {}).get("Value")
    return values[0] if values else default


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _timed_get(
    session: aiohttp.ClientSession, url: str, headers: dict, reps: int
) -> dict[str, Any]:
    """One cold and `reps` warm GETs; milliseconds."""
    times, size = [], 0
    for _ in range(1 + reps):
        start = time.perf_counter()
        async with session.get(url, headers=headers) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {url} -> {r.status}: {body[:200]!r}")
        times.append((time.perf_counter() - start) * 1e3)
        size = len(body)
    warm = times[1:] or times
    return {
        "cold_ms": round(times[0], 2),
        "warm_median_ms": round(statistics.median(warm), 2),
        "warm_min_ms": round(min(warm), 2),
        "warm_max_ms": round(max(warm), 2),
        "bytes": size,
    }


# -- STOW-RS -----------------------------------------------------------------
async def _multipart_body(path: Path, boundary: str) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    f = await loop.run_in_executor(None, path.open, "rb")
    try:
        while block := await loop.run_in_executor(None, f.read, READ_CHUNK):
            yield block
    finally:
        f.close()
    yield f"\r\n--{boundary}--\r\n".encode()


async def stow(base: str, files: list[Path], token: str | None) -> dict[str, Any]:
    sizes = [f.stat().st_size for f in files]
    statuses: list[int] = []
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.perf_counter()
        for path in files:
            boundary = uuid.uuid4().hex
            headers = {
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                **DICOM_JSON,
                **_auth(token),
            }
            async with session.post(
                f"{base}/studies", data=_multipart_body(path, boundary), headers=headers
            ) as r:
                await r.read()
                statuses.append(r.status)
        wall = time.perf_counter() - start
    return {
        "instances": len(files),
        "bytes": sum(sizes),
        "statuses": statuses,
        "ok": all(s == 200 for s in statuses),
        "wall_s": round(wall, 3),
        "instances_per_s": round(len(files) / wall, 2),
        "MB_per_s": round(sum(sizes) / wall / 1e6, 1),
    }


# -- QIDO-RS, level 0 and metadata -------------------------------------------
async def find(base: str, token: str | None, reps: int) -> dict[str, Any]:
    headers = {**DICOM_JSON, **_auth(token)}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        qido = await _timed_get(session, f"{base}/studies", headers, reps)
        level0 = await _level0(session, base, headers)
        instance_url = _instance_url(base, level0)
        metadata = await _timed_get(session, f"{instance_url}/metadata", headers, reps)
        frame_headers = {"Accept": FRAME_ACCEPT, **_auth(token)}
        async with session.get(f"{instance_url}/frames/1", headers=frame_headers) as r:
            await r.read()
            frame_type = r.headers.get("Content-Type", "")
            if r.status != 200:
                raise RuntimeError(f"frame 1 -> {r.status}")
    return {
        "qido_studies": qido,
        "level0": level0,
        "metadata_level0": metadata,
        "frame_content_type": frame_type.split("; boundary")[0],
    }


async def _level0(session: aiohttp.ClientSession, base: str, headers: dict) -> dict[str, Any]:
    """The VL WSI volume instance with the most frames, found through QIDO-RS."""
    best: dict[str, Any] | None = None
    async with session.get(f"{base}/studies", headers=headers) as r:
        studies = await r.json(content_type=None) or []
    for study in studies:
        study_uid = _value(study, "0020000D")
        fields = "&".join(f"includefield={t}" for t in ("00280008", "00080008", "00080016"))
        url = f"{base}/studies/{study_uid}/instances?{fields}"
        async with session.get(url, headers=headers) as r:
            found = await r.json(content_type=None) or []
        for item in found:
            if _value(item, "00080016") != WSI_STORAGE:
                continue
            if set(item.get("00080008", {}).get("Value") or []) & set(NON_VOLUME):
                continue
            frames = int(_value(item, "00280008", 0) or 0)
            if best is None or frames > best["frames"]:
                best = {
                    "study": study_uid,
                    "series": _value(item, "0020000E"),
                    "sop": _value(item, "00080018"),
                    "frames": frames,
                }
    if best is None:
        raise RuntimeError(f"no VL WSI volume instance at {base}")
    return best


def _instance_url(base: str, level0: dict[str, Any]) -> str:
    return f"{base}/studies/{level0['study']}/series/{level0['series']}/instances/{level0['sop']}"


# -- wrk ------------------------------------------------------------------------
def wrk_script(
    prefix: str,
    count: int,
    suffix: str = "",
    accept: str = FRAME_ACCEPT,
    token: str | None = None,
    seed: int = 42,
) -> str:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    return WRK_SCRIPT % {
        "prefix": prefix,
        "count": count,
        "suffix": suffix,
        "accept": accept,
        "auth": auth,
        "seed": seed,
    }


def run_wrk(
    url: str, script: str, connections: int, seconds: float, threads: int = 2
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        cmd = [
            "wrk",
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            f.name,
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(f.name)
    result = parse_wrk(out)
    result.update(concurrency=connections, seconds=seconds, command=" ".join(cmd[:-3]))
    return result


UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return round(float(number) * UNITS_MS[unit], 3)


def parse_wrk(out: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            result[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["per_s"] = float(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = m.group(1).strip() if m else ""
    if result["per_s"] is None:
        result["raw"] = out[-2000:]
    return result


async def frames_wrk(
    base: str, token: str | None, levels: list[int], seconds: float, level0: dict | None
) -> dict[str, Any]:
    if level0 is None:
        async with aiohttp.ClientSession() as session:
            level0 = await _level0(session, base, {**DICOM_JSON, **_auth(token)})
    prefix = _instance_url(base, level0) + "/frames/"
    script = wrk_script(_path_of(prefix), level0["frames"], token=token)
    await _check_frames(prefix, level0["frames"], token)
    return {
        "level0": level0,
        "levels": [run_wrk(_origin(base), script, c, seconds) for c in levels],
    }


async def _check_frames(prefix: str, count: int, token: str | None, samples: int = 20) -> None:
    """A few random frames must come back as one-part multipart bodies holding a JPEG."""
    import random

    rng = random.Random(7)
    headers = {"Accept": FRAME_ACCEPT, **_auth(token)}
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            async with session.get(f"{prefix}{rng.randint(1, count)}", headers=headers) as r:
                body = await r.read()
                if r.status != 200 or b"\xff\xd8" not in body[:400] or not body.endswith(b"--\r\n"):
                    raise RuntimeError(f"bad frame response {r.status} {body[:120]!r}")


def _origin(url: str) -> str:
    m = re.match(r"(https?://[^/]+)", url)
    return m.group(1)


def _path_of(url: str) -> str:
    return url[len(_origin(url)) :]


# -- static upper limit --------------------------------------------------------
def extract(dicom_file: Path, out_dir: Path) -> int:
    """Each frame of an encapsulated multi-frame file as its own file, named 1..N."""
    from pydicom import dcmread
    from pydicom.encaps import generate_frames

    ds = dcmread(dicom_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = int(ds.NumberOfFrames)
    for n, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=count), start=1):
        (out_dir / str(n)).write_bytes(frame)
    return count


NGINX_CONF = """
worker_processes %(workers)s;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path %(dir)s/body;
  proxy_temp_path %(dir)s/proxy;
  fastcgi_temp_path %(dir)s/fastcgi;
  uwsgi_temp_path %(dir)s/uwsgi;
  scgi_temp_path %(dir)s/scgi;
  server {
    listen 127.0.0.1:%(port)d;
    root %(root)s;
    default_type image/jpeg;
  }
}
"""


def static(
    tiles: Path, port: int, levels: list[int], seconds: float, workers: str = "auto"
) -> dict[str, Any]:
    count = sum(1 for _ in tiles.iterdir())
    work = Path(tempfile.mkdtemp(prefix="nginx-bench-"))
    conf = work / "nginx.conf"
    conf.write_text(
        NGINX_CONF % {"workers": workers, "dir": work, "port": port, "root": tiles.resolve()}
    )
    subprocess.run(["nginx", "-c", str(conf), "-g", "daemon on;"], check=True)
    try:
        _wait_port(port)
        script = wrk_script("/", count, accept="image/jpeg")
        url = f"http://127.0.0.1:{port}"
        return {"tiles": count, "levels": [run_wrk(url, script, c, seconds) for c in levels]}
    finally:
        pid = int((work / "nginx.pid").read_text())
        os.kill(pid, signal.SIGQUIT)
        time.sleep(0.5)
        shutil.rmtree(work, ignore_errors=True)


def _wait_port(port: int, seconds: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# -- command line --------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--token", default=os.environ.get("TESSERA_TOKEN"))
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stow")
    p.add_argument("base")
    p.add_argument("files", nargs="+", type=Path)
    p = sub.add_parser("find")
    p.add_argument("base")
    p.add_argument("--reps", type=int, default=10)
    p = sub.add_parser("frames")
    p.add_argument("base")
    p.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("-d", "--seconds", type=float, default=10.0)
    p = sub.add_parser("extract")
    p.add_argument("file", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("static")
    p.add_argument("tiles", type=Path)
    p.add_argument("--port", type=int, default=18490)
    p.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("-d", "--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)

    if args.cmd == "stow":
        files = sorted(f for p in args.files for f in (p.rglob("*.dcm") if p.is_dir() else [p]))
        result = asyncio.run(stow(args.base.rstrip("/"), files, args.token))
    elif args.cmd == "find":
        result = asyncio.run(find(args.base.rstrip("/"), args.token, args.reps))
    elif args.cmd == "frames":
        result = asyncio.run(
            frames_wrk(args.base.rstrip("/"), args.token, args.concurrency, args.seconds, None)
        )
    elif args.cmd == "extract":
        result = {"frames": extract(args.file, args.out)}
    else:
        result = static(args.tiles, args.port, args.concurrency, args.seconds)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
