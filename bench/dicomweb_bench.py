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
    yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    async for block in _file_body(path):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


async def _file_body(path: Path) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    f = await loop.run_in_executor(None, path.open, "rb")
    try:
        while block := await loop.run_in_executor(None, f.read, READ_CHUNK):
            yield block
    finally:
        f.close()


async def stow(
    base: str, files: list[Path], token: str | None, rest_url: str | None = None
) -> dict[str, Any]:
    """STOW-RS to {base}/studies, or with rest_url each file as the raw body of a POST there
    (Orthanc's own upload, POST /instances)."""
    sizes = [f.stat().st_size for f in files]
    statuses: list[int] = []
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.perf_counter()
        for path in files:
            if rest_url:
                url, body, headers = rest_url, _file_body(path), {**_auth(token)}
                headers["Content-Type"] = "application/dicom"
            else:
                boundary = uuid.uuid4().hex
                url, body = f"{base}/studies", _multipart_body(path, boundary)
                headers = {
                    "Content-Type": (
                        f'multipart/related; type="application/dicom"; boundary={boundary}'
                    ),
                    **DICOM_JSON,
                    **_auth(token),
                }
            async with session.post(url, data=body, headers=headers) as r:
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
            if not frames:  # not returned by QIDO: ask the instance's metadata
                frames = await _frames_from_metadata(session, base, headers, study_uid, item)
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


async def _frames_from_metadata(
    session: aiohttp.ClientSession, base: str, headers: dict, study_uid: str, item: dict
) -> int:
    level = {
        "study": study_uid,
        "series": _value(item, "0020000E"),
        "sop": _value(item, "00080018"),
    }
    async with session.get(f"{_instance_url(base, level)}/metadata", headers=headers) as r:
        (metadata,) = await r.json(content_type=None)
    return int(_value(metadata, "00280008", 1) or 1)


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
    url: str,
    script: str,
    connections: int,
    seconds: float,
    threads: int = 2,
    server_pids: list[int] | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """wrk at one concurrency; with server_pids, also the servers' CPU time per request
    (a figure that other load on the machine disturbs much less than requests/s)."""
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
            f"{int(timeout)}s",
            "-s",
            f.name,
            url,
        ]
        cpu_before, machine_before = _cpu_seconds(server_pids), _machine_busy()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
        cpu_after, machine_after = _cpu_seconds(server_pids), _machine_busy()
    finally:
        os.unlink(f.name)
    result = parse_wrk(out)
    result.update(concurrency=connections, seconds=seconds, command=" ".join(cmd[:-3]))
    if server_pids and result.get("requests"):
        used = cpu_after - cpu_before
        result["server_cpu_us_per_request"] = round(used / result["requests"] * 1e6, 1)
        result["server_cores_busy"] = round(used / seconds, 2)
    busy = [b - a for a, b in zip(machine_before, machine_after, strict=True)]
    result["machine_cores_busy"] = round(busy[0] / seconds, 2) if busy[1] else None
    return result


def _cpu_seconds(pids: list[int] | None) -> float:
    """User + system CPU seconds of the given processes and their children."""
    import psutil

    total = 0.0
    for pid in pids or []:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy CPU seconds over all cores, total CPU seconds) since boot."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq, sum(t)


UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float | None:
    """wrk's latency text (``812.00us``, ``4.10ms``, ``1.02s``, ``1.50m``) in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        return None
    number, unit = match.groups()
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
    base: str,
    token: str | None,
    levels: list[int],
    seconds: float,
    level0: dict | None = None,
    server_pids: list[int] | None = None,
    request_timeout: float = 10.0,
) -> dict[str, Any]:
    if level0 is None:
        async with aiohttp.ClientSession() as session:
            level0 = await _level0(session, base, {**DICOM_JSON, **_auth(token)})
    prefix = _instance_url(base, level0) + "/frames/"
    script = wrk_script(_path_of(prefix), level0["frames"], token=token)
    await _check_frames(prefix, level0["frames"], token)
    return {
        "level0": level0,
        "levels": [
            run_wrk(
                _origin(base), script, c, seconds, server_pids=server_pids, timeout=request_timeout
            )
            for c in levels
        ],
    }


async def _check_frames(prefix: str, count: int, token: str | None, samples: int = 5) -> None:
    """A few random frames must come back as multipart bodies whose part is a JPEG."""
    import random

    rng = random.Random(7)
    headers = {"Accept": FRAME_ACCEPT, **_auth(token)}
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            async with session.get(f"{prefix}{rng.randint(1, count)}", headers=headers) as r:
                body = await r.read()
            _, _, payload = body.partition(b"\r\n\r\n")
            if r.status != 200 or payload[:2] != b"\xff\xd8" or not body.rstrip().endswith(b"--"):
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
        pids = [int((work / "nginx.pid").read_text())]
        runs = [run_wrk(url, script, c, seconds, server_pids=pids) for c in levels]
        return {"tiles": count, "levels": runs}
    finally:
        pid = int((work / "nginx.pid").read_text())
        os.kill(pid, signal.SIGQUIT)
        time.sleep(0.5)
        shutil.rmtree(work, ignore_errors=True)


def _wait_port(port: int, seconds: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for port {port} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# -- the whole comparison ------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers"
SLIDE_SVS = Path("/tmp/peers/data/big-40000x30000.svs")
WSIDICOMIZER = Path("/tmp/peers/venv/bin/wsidicomizer")
WORK = Path("/tmp/peers/dicomweb-bench")
OUT = REPO / "bench" / "out"
ORTHANC = Path("/usr/sbin/Orthanc")
ORTHANC_HTTP, ORTHANC_DICOM = 18042, 14242  # a private Orthanc, apart from the shared 8042


def slide_dicom(work: Path) -> Path:
    """The big synthetic slide as DICOM (wsidicomizer, JPEG tiles copied): made once."""
    folder = work / "slide"
    if not any(folder.glob("*.dcm")):
        if not (WSIDICOMIZER.exists() and SLIDE_SVS.exists()):
            raise SystemExit(f"run `bash {PEERS}/setup.sh` first: no {SLIDE_SVS} or wsidicomizer")
        shutil.rmtree(folder, ignore_errors=True)
        cmd = [str(WSIDICOMIZER), "-i", str(SLIDE_SVS), "-o", str(folder)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return folder


class TesseraServer:
    """`tessera serve` on a fresh data folder (or, without ``fresh``, the folder as it is),
    with an API token when access control is on; ``env``: settings for it (e.g. TESSERA_S3_*)."""

    def __init__(
        self,
        data: Path,
        port: int,
        repo: Path = REPO,
        extra: list[str] | None = None,
        *,
        env: dict[str, str] | None = None,
        fresh: bool = True,
    ) -> None:
        self.data, self.port, self.repo, self.extra = data, port, repo, extra or []
        self.env = {**os.environ, "PYTHONPATH": str(repo), **(env or {})}
        self.fresh = fresh
        self.proc: subprocess.Popen | None = None
        self.token: str | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicomweb"

    def __enter__(self) -> TesseraServer:
        if self.fresh:
            shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "hub.cli", "serve", "--data", str(self.data)]
        cmd += ["--port", str(self.port), *self.extra]
        log = open(self.data.parent / f"serve-{self.port}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, cwd=self.repo, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        _wait_port(self.port, 60, self.proc)
        self.token = self._issue_token()
        return self

    def _issue_token(self) -> str | None:
        cli = [sys.executable, "-m", "hub.cli", "user"]
        add = [*cli, "add", "--data", str(self.data), "bench", "--role", "integration"]
        made = subprocess.run(
            [*add, "--no-password"], cwd=self.repo, env=self.env, capture_output=True, text=True
        )
        if made.returncode != 0 and "exists" not in made.stderr:
            return None  # no access control in this build
        issued = subprocess.run(
            [*cli, "token", "--data", str(self.data), "bench", "--days", "1"],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return issued.stdout.strip().splitlines()[-1].strip()

    def __exit__(self, *exc: object) -> None:
        _stop(self.proc)


class OrthancServer:
    """Orthanc 1.10 + DICOMweb + WSI plugins with the peers' configuration, on its own ports
    and storage so that it does not disturb the shared instance of orthanc.sh."""

    def __init__(self, work: Path) -> None:
        self.work = work / "orthanc"
        self.proc: subprocess.Popen | None = None

    base = f"http://127.0.0.1:{ORTHANC_HTTP}/dicom-web"
    rest = f"http://127.0.0.1:{ORTHANC_HTTP}/instances"

    def __enter__(self) -> OrthancServer:
        shutil.rmtree(self.work, ignore_errors=True)
        (self.work / "db").mkdir(parents=True)
        text = (PEERS / "orthanc.json").read_text()
        text = text.replace("/tmp/peers/orthanc/db", str(self.work / "db"))
        text = text.replace('"HttpPort" : 8042', f'"HttpPort" : {ORTHANC_HTTP}')
        text = text.replace('"DicomPort" : 4242', f'"DicomPort" : {ORTHANC_DICOM}')
        text = text.replace("127.0.0.1:8042", f"127.0.0.1:{ORTHANC_HTTP}")
        (self.work / "orthanc.json").write_text(text)
        log = open(self.work / "stdout.log", "w")  # noqa: SIM115
        cmd = [str(ORTHANC), f"--logdir={self.work}", str(self.work / "orthanc.json")]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _wait_port(ORTHANC_HTTP, 60, self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        _stop(self.proc)


def _stop(proc: subprocess.Popen | None) -> None:
    """Terminate; kill if it is still busy (Orthanc finishes queued frame requests first)."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r["ok"]]
    return {
        "runs": runs,
        "ok_runs": len(ok),
        "MB_per_s": statistics.median(r["MB_per_s"] for r in ok) if ok else None,
        "instances_per_s": statistics.median(r["instances_per_s"] for r in ok) if ok else None,
    }


def suite(
    runs: int,
    levels: list[int],
    seconds: float,
    port: int,
    with_orthanc: bool,
    repo: Path = REPO,
    workers: int = 1,
) -> dict[str, Any]:
    """STOW runs interleaved (so other load on the machine hits every system alike), then
    reads on the last loaded copy of each, then nginx on the extracted tiles."""
    WORK.mkdir(parents=True, exist_ok=True)
    folder = slide_dicom(WORK)
    files = sorted(folder.glob("*.dcm"))
    orthanc = with_orthanc and ORTHANC.exists() and (PEERS / "orthanc.json").exists()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "load_average_start": os.getloadavg(),
        "tessera_workers": workers,
    }
    serve_options = ["--workers", str(workers)] if workers > 1 else []
    stow_runs: dict[str, list] = {"tessera": [], "orthanc_stow_rs": [], "orthanc_rest": []}
    for _ in range(runs):
        with TesseraServer(WORK / "tessera", port, repo, serve_options) as hub:
            stow_runs["tessera"].append(asyncio.run(stow(hub.base, files, hub.token)))
        if orthanc:
            with OrthancServer(WORK):
                stow_runs["orthanc_stow_rs"].append(
                    asyncio.run(stow(OrthancServer.base, files, None))
                )
            with OrthancServer(WORK):
                stow_runs["orthanc_rest"].append(
                    asyncio.run(stow("", files, None, rest_url=OrthancServer.rest))
                )
    result["stow"] = {k: _median_of(v) for k, v in stow_runs.items() if v}
    _save(result)
    with TesseraServer(WORK / "tessera", port, repo, serve_options) as hub:
        asyncio.run(stow(hub.base, files, hub.token))
        result["tessera"] = asyncio.run(_reads(hub.base, hub.token, levels, seconds, hub.proc))
    _save(result)
    if orthanc:
        with OrthancServer(WORK) as peer:
            asyncio.run(stow(peer.base, files, None))
            # Orthanc parses the whole instance for each frame (0.5-2 s here): a longer run
            # and timeout, else wrk counts no finished request at concurrency 8 and 32.
            result["orthanc"] = asyncio.run(
                _reads(peer.base, None, levels, max(seconds, 60), peer.proc, request_timeout=120)
            )
        _save(result)
    if shutil.which("nginx"):
        tiles = WORK / "tiles"
        level0 = max(files, key=lambda f: f.stat().st_size)
        if not (tiles / "1").exists():
            extract(level0, tiles)
        result["nginx"] = static(tiles, port + 10, levels, seconds)
    result["load_average_end"] = os.getloadavg()
    _save(result)
    return result


def compare(
    builds: dict[str, Path], rounds: int, levels: list[int], seconds: float, port: int
) -> dict[str, Any]:
    """Frames under wrk from several builds of the hub (trees made with `git archive`), each on
    its own port and copy of the slide, measured in turn so that other load hits all alike."""
    folder = slide_dicom(WORK)
    files = sorted(folder.glob("*.dcm"))
    servers = {}
    try:
        for i, (name, repo) in enumerate(builds.items()):
            server = TesseraServer(WORK / f"compare-{name}", port + i, repo).__enter__()
            servers[name] = server
            asyncio.run(stow(server.base, files, server.token))
        first = next(iter(servers.values()))
        level0 = asyncio.run(find(first.base, first.token, 1))["level0"]
        runs: dict[str, list] = {name: [] for name in servers}
        for _ in range(rounds):
            for name, server in servers.items():
                loaded = asyncio.run(
                    frames_wrk(
                        server.base, server.token, levels, seconds, level0, [server.proc.pid]
                    )
                )
                runs[name] += loaded["levels"]
    finally:
        for server in servers.values():
            server.__exit__()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "builds": {k: str(v) for k, v in builds.items()},
        "runs": runs,
        "medians": {name: _medians_by_level(xs) for name, xs in runs.items()},
    }


def _medians_by_level(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("per_s", "p50_ms", "p99_ms", "server_cpu_us_per_request", "server_cores_busy")
    out = []
    for c in sorted({r["concurrency"] for r in runs}):
        same = [r for r in runs if r["concurrency"] == c]
        row: dict[str, Any] = {"concurrency": c}
        for k in keys:
            values = [r[k] for r in same if r.get(k) is not None]
            row[k] = round(statistics.median(values), 2) if values else None
        out.append(row)
    return out


def _save(result: dict[str, Any]) -> None:
    """Written after each phase, so a failure later keeps what was measured."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "dicomweb.json").write_text(json.dumps(result, indent=1))


async def _reads(
    base: str,
    token: str | None,
    levels: list[int],
    seconds: float,
    proc: subprocess.Popen | None,
    request_timeout: float = 10.0,
) -> dict[str, Any]:
    found = await find(base, token, reps=5)
    pids = [proc.pid] if proc is not None else None
    loaded = await frames_wrk(
        base, token, levels, seconds, found["level0"], pids, request_timeout=request_timeout
    )
    return {**found, "frames": loaded["levels"]}


def markdown(r: dict[str, Any]) -> str:
    """The summary tables that go into bench/RESULTS.md."""
    lines = [
        f"{r['files']} instances, {r['bytes'] / 1e6:.0f} MB; load average "
        f"{'/'.join(f'{x:.1f}' for x in r['load_average_start'])} at the start, "
        f"{'/'.join(f'{x:.1f}' for x in r['load_average_end'])} at the end; "
        f"`tessera serve --workers {r.get('tessera_workers', 1)}`.",
        "",
        "| STOW | runs ok | MB/s (median) | instances/s | per run MB/s |",
        "|---|---|---|---|---|",
    ]
    for name, s in r["stow"].items():
        per_run = ", ".join(str(x["MB_per_s"]) for x in s["runs"])
        lines.append(
            f"| {name} | {s['ok_runs']}/{len(s['runs'])} | {s['MB_per_s']} | "
            f"{s['instances_per_s']} | {per_run} |"
        )
    lines += ["", "| reads | QIDO /studies warm ms | level-0 /metadata cold / warm ms |"]
    lines.append("|---|---|---|")
    for name in ("tessera", "orthanc"):
        if name in r:
            q, m = r[name]["qido_studies"], r[name]["metadata_level0"]
            lines.append(
                f"| {name} | {q['warm_median_ms']} | {m['cold_ms']} / {m['warm_median_ms']} |"
            )
    lines += [
        "",
        "| frames (wrk, random tiles) | c | per s | p50 ms | p90 ms | p99 ms | non-2xx | "
        "server CPU us/request | server cores busy | machine cores busy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("tessera", "orthanc", "nginx"):
        if name not in r:
            continue
        levels = r[name]["frames"] if name != "nginx" else r[name]["levels"]
        for x in levels:
            lines.append(
                f"| {name} | {x['concurrency']} | {x.get('per_s')} | {x.get('p50_ms')} | "
                f"{x.get('p90_ms')} | {x.get('p99_ms')} | {x.get('non_2xx')} | "
                f"{x.get('server_cpu_us_per_request', '')} | {x.get('server_cores_busy', '')} | "
                f"{x.get('machine_cores_busy')} |"
            )
    return "\n".join(lines) + "\n"


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
    p.add_argument("--pid", type=int, action="append", help="server process (CPU per request)")
    p.add_argument("--request-timeout", type=float, default=10.0)
    p = sub.add_parser("all", help="the whole comparison (Tessera, Orthanc, nginx)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("-d", "--seconds", type=float, default=10.0)
    p.add_argument("--port", type=int, default=18480)
    p.add_argument("--no-orthanc", action="store_true")
    p.add_argument(
        "--repo", type=Path, default=REPO, help="run the hub from this tree (e.g. a git archive)"
    )
    p.add_argument("--workers", type=int, default=2, help="`tessera serve --workers`")
    p = sub.add_parser("compare", help="frames from several builds of the hub, in turn")
    p.add_argument("--build", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("-d", "--seconds", type=float, default=6.0)
    p.add_argument("--port", type=int, default=18480)
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
            frames_wrk(
                args.base.rstrip("/"),
                args.token,
                args.concurrency,
                args.seconds,
                server_pids=args.pid,
                request_timeout=args.request_timeout,
            )
        )
    elif args.cmd == "all":
        result = suite(
            args.runs,
            args.concurrency,
            args.seconds,
            args.port,
            not args.no_orthanc,
            args.repo,
            args.workers,
        )
        print(markdown(result))
        return 0
    elif args.cmd == "compare":
        builds = dict(b.split("=", 1) for b in args.build)
        result = compare(
            {k: Path(v) for k, v in builds.items()},
            args.rounds,
            args.concurrency,
            args.seconds,
            args.port,
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
