"""How fast could a Python C-STORE SCP be without pynetdicom? A measuring tool, not the product.

A bare asyncio receiver that speaks just enough of the DICOM upper layer for storescu (associate,
P-DATA, C-STORE-RSP, release), writes each data set with its file meta to a file and, per
``--work``:

  none     answers at once (the transport and protocol floor of Python)
  durable  + fsync of the file before the answer (what "stored" has to mean)
  parse    + the archive's own parse of the file (``hub.archive.parse.parse_part10``: pydicom
           read, index attributes, DICOM JSON), in this thread
  index    + one INSERT and COMMIT per object into a WAL SQLite file through sqlite3

    .venv/bin/python bench/dimse_floor.py --small 1000 --work none durable parse index

prints instances/s per level of work, storescu sending the same CT slices as
``bench/dimse_bench.py --small --nodelay`` over one association.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dimse_bench import files_of, small_data  # noqa: E402
from hub.archive.parse import parse_part10  # noqa: E402

HOST = "127.0.0.1"
AE = b"FLOOR".ljust(16)
IMPLICIT_LE = b"1.2.840.10008.1.2"
APP_CONTEXT = b"1.2.840.10008.3.1.1.1"


def _items(body: bytes):
    pos = 0
    while pos + 4 <= len(body):
        kind, length = body[pos], struct.unpack(">H", body[pos + 2 : pos + 4])[0]
        yield kind, body[pos + 4 : pos + 4 + length]
        pos += 4 + length


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def associate_ac(rq: bytes) -> tuple[bytes, dict[int, bytes]]:
    """A-ASSOCIATE-AC for an RQ body: every context accepted in its first transfer syntax."""
    called, calling = rq[4:20], rq[20:36]
    contexts: dict[int, bytes] = {}
    items = [_item(0x10, APP_CONTEXT)]
    for kind, body in _items(rq[68:]):
        if kind != 0x20:
            continue
        syntaxes = [sub for k, sub in _items(body[4:]) if k == 0x40]
        contexts[body[0]] = syntaxes[0].rstrip(b"\0")
        sub = _item(0x40, syntaxes[0])
        items.append(_item(0x21, bytes([body[0], 0, 0, 0]) + sub))
    user = _item(0x51, struct.pack(">I", 1 << 20)) + _item(0x52, b"1.2.826.0.1.3680043.9.7433.1")
    items.append(_item(0x50, user))
    body = struct.pack(">HH", 1, 0) + called + calling + bytes(32) + b"".join(items)
    return struct.pack(">BBI", 2, 0, len(body)) + body, contexts


def command_elements(data: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack("<HHI", data[pos : pos + 8])
        out[elem] = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return out


def _element(elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", 0, elem, len(value)) + value


def store_rsp(cmd: dict[int, bytes], context: int) -> bytes:
    body = (
        _element(0x0002, cmd[0x0002].rstrip(b"\0"))
        + _element(0x0100, struct.pack("<H", 0x8001))
        + _element(0x0120, cmd[0x0110])
        + _element(0x0800, struct.pack("<H", 0x0101))
        + _element(0x0900, struct.pack("<H", 0))
        + _element(0x1000, cmd[0x1000].rstrip(b"\0"))
    )
    command = _element(0x0000, struct.pack("<I", len(body))) + body
    pdv = struct.pack(">IBB", len(command) + 2, context, 0x03) + command
    return struct.pack(">BBI", 4, 0, len(pdv)) + pdv


def file_meta(sop_class: bytes, sop_uid: bytes, syntax: bytes) -> bytes:
    def el(elem: int, vr: bytes, value: bytes) -> bytes:
        if len(value) % 2:
            value += b"\0"
        if vr == b"OB":
            return (
                struct.pack("<HH", 2, elem) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
            )
        return struct.pack("<HH", 2, elem) + vr + struct.pack("<H", len(value)) + value

    body = (
        el(0x0001, b"OB", b"\0\1")
        + el(0x0002, b"UI", sop_class)
        + el(0x0003, b"UI", sop_uid)
        + el(0x0010, b"UI", syntax)
        + el(0x0012, b"UI", b"1.2.826.0.1.3680043.9.7433.1")
    )
    return bytes(128) + b"DICM" + el(0x0000, b"UL", struct.pack("<I", len(body))) + body


class Receiver(asyncio.Protocol):
    def __init__(self, work: str, folder: Path, db: sqlite3.Connection | None) -> None:
        self.work, self.folder, self.db = work, folder, db
        self.buffer = bytearray()
        self.command = bytearray()
        self.dataset: list[bytes] = []
        self.contexts: dict[int, bytes] = {}
        self.count = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 6:
            kind, length = self.buffer[0], struct.unpack(">I", self.buffer[2:6])[0]
            if len(self.buffer) < 6 + length:
                return
            body = bytes(self.buffer[6 : 6 + length])
            del self.buffer[: 6 + length]
            self.pdu(kind, body)

    def pdu(self, kind: int, body: bytes) -> None:
        if kind == 1:
            ac, self.contexts = associate_ac(body)
            self.transport.write(ac)
        elif kind == 4:
            self.pdata(body)
        elif kind == 5:
            self.transport.write(struct.pack(">BBI", 6, 0, 4) + bytes(4))
        else:
            self.transport.close()

    def pdata(self, body: bytes) -> None:
        pos = 0
        while pos < len(body):
            length, context, control = struct.unpack(">IBB", body[pos : pos + 6])
            value = body[pos + 6 : pos + 4 + length]
            pos += 4 + length
            if control & 1:
                self.command += value
                if control & 2:
                    self.cmd = command_elements(bytes(self.command))
                    self.command.clear()
            else:
                self.dataset.append(value)
                if control & 2:
                    self.stored(context)

    def stored(self, context: int) -> None:
        cmd = self.cmd
        meta = file_meta(
            cmd[0x0002].rstrip(b"\0"), cmd[0x1000].rstrip(b"\0"), self.contexts[context]
        )
        data = b"".join(self.dataset)
        self.dataset.clear()
        self.count += 1
        path = self.folder / f"{self.count}.dcm"
        with open(path, "wb") as f:
            f.write(meta)
            f.write(data)
            digest = hashlib.sha256(meta + data).hexdigest()
            if self.work != "none":
                f.flush()
                os.fsync(f.fileno())
        if self.work in ("parse", "index"):
            parsed = parse_part10(path)
            if self.db is not None:
                self.db.execute(
                    "INSERT INTO instances VALUES (?, ?, ?)", (parsed.sop_uid, digest, len(data))
                )
                self.db.commit()
        self.transport.write(store_rsp(cmd, context))


async def measure(work: str, files: list[Path], port: int) -> float:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        folder = Path(tmp)
        db = None
        if work == "index":
            db = sqlite3.connect(folder / "index.sqlite", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE instances (sop_uid TEXT PRIMARY KEY, sha256 TEXT, size INT)")
            db.isolation_level = "DEFERRED"
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Receiver(work, folder, db), HOST, port)
        try:
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                "storescu", "-aec", "FLOOR", HOST, str(port), *map(str, files),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            if await proc.wait() != 0:
                raise RuntimeError(f"storescu failed ({work})")
            return len(files) / (time.perf_counter() - started)
        finally:
            server.close()
            await server.wait_closed()
            if db is not None:
                db.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=11199)
    parser.add_argument("--work", nargs="+", default=["none", "durable", "parse", "index"])
    args = parser.parse_args()
    os.environ["TCP_NODELAY"] = "1"  # storescu too, as with dimse_bench.py --nodelay
    files = files_of(small_data(args.small))
    for work in args.work:
        rates = [await measure(work, files, args.port) for _ in range(args.runs)]
        print(f"{work:8} {statistics.median(rates):7.1f} instances/s  runs {rates}")


if __name__ == "__main__":
    asyncio.run(main())
