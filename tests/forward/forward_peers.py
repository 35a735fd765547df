"""Helpers for the forwarding tests: real receivers (dcmtk storescp, a pynetdicom SCP),
sample files and an archive with forwarding that can be closed and reopened."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from hubtest import free_port
from pydicom.data import get_testdata_file
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.dsutils import split_dataset
from pynetdicom.transport import ThreadedAssociationServer

import hub.cli
from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.archive import Archive
from hub.config import Settings, sections
from hub.forward import service
from hub.forward.keys import FORWARDER_KEY
from hub.forward.worker import Forwarder
from hub.serve import registry
from hub.stores import open_store

FAST_RETRY = {"base": 0.2, "multiplier": 2.0, "max_delay": 1.0, "max_attempts": 100}
FAST_TIMEOUTS = {"connect": 3, "acse": 5, "dimse": 15, "network": 15, "http": 15}

# Real objects of several SOP classes and transfer syntaxes (pydicom-data).
TESTDATA = [
    "CT_small.dcm",  # CT, explicit VR little endian
    "SC_rgb_jpeg_dcmd.dcm",  # secondary capture, implicit VR little endian
    "US1_J2KR.dcm",  # US, JPEG 2000 lossless
    "color3d_jpeg_baseline.dcm",  # US multi-frame cine, JPEG baseline
    "SC_rgb_rle.dcm",  # secondary capture, RLE lossless
]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"receiver exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def dataset_sha256(path: Path) -> str:
    """sha256 of the encoded data set after the file meta information: what travels in a
    C-STORE, and what ``storescp --bit-preserving --write-dataset`` writes."""
    _, offset = split_dataset(path)
    return hashlib.sha256(path.read_bytes()[offset:]).hexdigest()


class StoreSCP:
    """dcmtk storescp writing every received data set exactly as it came off the wire."""

    def __init__(self, out: Path, ae_title: str = "PACS", accept_all: bool = True) -> None:
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.ae_title = ae_title
        self.accept_all = accept_all
        self.proc: subprocess.Popen | None = None
        self.log = out.parent / f"storescp-{self.port}.log"

    def start(self, *extra: str) -> None:
        args = ["storescp", "-aet", self.ae_title, "-od", str(self.out), "+B", "-F", "-dhl"]
        if self.accept_all:
            args.append("+xa")
        args += [*extra, str(self.port)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def received(self) -> dict[str, str]:
        """SOP Instance UID -> sha256 of the data set bytes written by storescp."""
        found = {}
        for path in self.out.iterdir():
            if path.is_file():
                # default file names are <modality prefix>.<SOP Instance UID>
                sop = path.name.split(".", 1)[1]
                found[sop] = hashlib.sha256(path.read_bytes()).hexdigest()
        return found

    def target(self, name: str = "pacs") -> dict:
        return {
            "type": "dimse",
            "host": "127.0.0.1",
            "port": self.port,
            "called_ae": self.ae_title,
            "calling_ae": "TESSERA",
        }


class RefusingSCP:
    """A real pynetdicom Storage SCP that answers every C-STORE with ``status`` until fixed."""

    def __init__(self, status: int = 0xA900) -> None:
        self.status = status
        self.received: dict[str, bytes] = {}
        self.port = free_port()
        ae = AE(ae_title="VNA")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae = ae
        self.server: ThreadedAssociationServer | None = None
        self._lock = threading.Lock()

    def _on_store(self, event: evt.Event) -> int:
        with self._lock:
            if self.status == 0x0000:
                self.received[event.request.AffectedSOPInstanceUID] = (
                    event.request.DataSet.getvalue()
                )
            return self.status

    def start(self) -> None:
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def target(self) -> dict:
        return {"type": "dimse", "host": "127.0.0.1", "port": self.port, "called_ae": "VNA"}


class SlowSCP:
    """A real pynetdicom Storage SCP that takes ``service`` seconds over every C-STORE, and
    records each association: when its connection opened and closed, and what it carried."""

    def __init__(self, service: float) -> None:
        self.service = service
        self.port = free_port()
        ae = AE(ae_title="SLOW")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.maximum_associations = 4
        self.ae = ae
        self.server: ThreadedAssociationServer | None = None
        self.associations: list[PeerAssociation] = []
        self._open: dict[int, PeerAssociation] = {}
        self._lock = threading.Lock()

    def _on_open(self, event: evt.Event) -> None:
        with self._lock:
            self._open[id(event.assoc)] = PeerAssociation(time.time())

    def _on_store(self, event: evt.Event) -> int:
        time.sleep(self.service)
        with self._lock:
            self._open[id(event.assoc)].sops.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    def _on_close(self, event: evt.Event) -> None:
        with self._lock:
            done = self._open.pop(id(event.assoc))
            done.closed = time.time()
            self.associations.append(done)

    def start(self) -> None:
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=handlers
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def target(self) -> dict:
        return {"type": "dimse", "host": "127.0.0.1", "port": self.port, "called_ae": "SLOW"}


@dataclass
class PeerAssociation:
    opened: float
    closed: float = 0.0
    sops: list[str] = field(default_factory=list)


def sample_files() -> list[Path]:
    return [Path(get_testdata_file(name)) for name in TESTDATA]


class Hub:
    """An archive with forwarding, served by an aiohttp app built the way the hub builds it
    (``hub.serve.registry.setup``, ``hub.forward.service.setup``), on a data dir that survives
    close and reopen (and so keeps its node id)."""

    def __init__(
        self, data_dir: Path, forward: dict, database_url: str | None = None, **extra
    ) -> None:
        self.settings = Settings(
            data_dir=data_dir, database_url=database_url, **sections(forward=forward, **extra)
        )
        self.archive: Archive | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""

    @property
    def forwarder(self) -> Forwarder:
        assert self.runner is not None
        return self.runner.app[FORWARDER_KEY]

    async def open(self) -> Hub:
        self.archive = await Archive.open(self.settings, store=open_store(self.settings))
        app = web.Application()
        app[SETTINGS_KEY] = self.settings
        app[ARCHIVE_KEY] = self.archive
        registry.setup(app)
        service.setup(app)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.archive is not None:
            await self.archive.close()
        self.archive = self.runner = None

    async def wait_until(self, check: Callable, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while True:
            if await check():
                return
            if time.monotonic() > deadline:
                tasks = await self.forwarder.queue.list(limit=1000)
                raise AssertionError(f"queue did not settle: {[t.to_json() for t in tasks]}")
            await asyncio.sleep(0.1)

    async def wait_settled(self, within: float = 60) -> dict[str, dict[str, int]]:
        """Wait until nothing is pending or in flight; returns {target: {state: count}}."""

        async def settled() -> bool:
            counts = await self.forwarder.queue.counts()
            return all(not c.get("pending") and not c.get("in_flight") for c in counts.values())

        await self.wait_until(settled, within)
        return await self.forwarder.queue.counts()


def forward_config(targets: dict, rules: list, **extra) -> dict:
    return {
        "targets": targets,
        "rules": rules,
        "retry": FAST_RETRY,
        "timeouts": FAST_TIMEOUTS,
        "poll_interval": 0.5,
        **extra,
    }


class Gateway:
    """A reverse proxy in front of a hub, as nginx would stand: it relays requests to the
    upstream and answers 503 Service Unavailable while the upstream is down."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = f"http://127.0.0.1:{upstream_port}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runner: web.AppRunner | None = None
        self.unavailable = 0  # how many requests got 503

    async def _relay(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.read()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.request(
                    request.method, self.upstream + request.path_qs, headers=headers, data=body
                ) as resp,
            ):
                content = await resp.read()
                return web.Response(
                    status=resp.status, body=content, content_type=resp.content_type
                )
        except aiohttp.ClientConnectionError:
            self.unavailable += 1
            return web.Response(status=503, text="upstream unavailable")

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


async def run_cli(monkeypatch, capsys, data_dir: Path, *argv: str) -> tuple[int, str, str]:
    """Run `tessera forward ...` through the real `tessera` parser (in a thread: it runs its
    own event loop)."""
    monkeypatch.setattr(hub.cli, "COMMAND_MODULES", ["hub.forward.cli"])
    code = await asyncio.to_thread(hub.cli.main, ["forward", *argv, "--data", str(data_dir)])
    out = capsys.readouterr()
    return code, out.out, out.err
