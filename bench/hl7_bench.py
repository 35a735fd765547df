"""HL7 v2 messages per second, each answered with its ACK, into a running `tessera serve`.

A fresh hub (SQLite, a local folder) listens for MLLP; C connections each send their share of
N messages one after the other, as a RIS does (MLLP waits for the ACK before the next message).
Two kinds are measured: new orders (ORM^O01 NW, each a new worklist step) and patient updates
(ADT^A08 of patients with a stored study each, which rewrites what their studies present).
The figures: messages per second over the whole run, and the ACK latency's median and 99th
percentile. No peer archive here takes HL7 (Orthanc has none; dcm4chee-arc is not installed).
Not a test.

    python bench/hl7_bench.py [--messages 2000] [--connections 1 4] [--append]

--append adds a dated section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TESSERA = str(Path(sys.executable).with_name("tessera"))
HEADER = "MSH|^~\\&|RIS|HOSP|TESSERA|HUB|20261201080000||{kind}|{control}|P|2.5"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def order(n: int) -> str:
    return "\r".join(
        [
            HEADER.format(kind="ORM^O01", control=f"O{n}"),
            f"PID|||B{n}^^^HOSP^MR||DOE^BABY{n}||20260601|F",
            f"ORC|NW|PL{n}^RIS|FL{n}^RIS||SC||^^^20261228093000",
            f"OBR|1|PL{n}^RIS|FL{n}^RIS|HIPUS^Hip ultrasound^99T||||||||||||||ACC{n}|RP{n}|SPS{n}"
            "||||US",
        ]
    )


def update(n: int, patients: int) -> str:
    return "\r".join(
        [
            HEADER.format(kind="ADT^A08", control=f"U{n}"),
            "EVN||20261201080000",
            f"PID|||S{n % patients}^^^HOSP^MR||ROE^RENAMED{n}||20260602|F",
        ]
    )


async def send_all(port: int, texts: list[str]) -> list[float]:
    """Send each message on one connection, waiting for its ACK; the latencies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies = []
    try:
        for text in texts:
            start = time.perf_counter()
            writer.write(b"\x0b" + text.encode() + b"\x1c\r")
            await writer.drain()
            ack = await reader.readuntil(b"\x1c\r")
            latencies.append(time.perf_counter() - start)
            if b"MSA|AA|" not in ack:
                raise RuntimeError(f"not accepted: {ack!r}")
    finally:
        writer.close()
        await writer.wait_closed()
    return latencies


async def run(port: int, texts: list[str], connections: int) -> tuple[float, list[float]]:
    shares = [texts[i::connections] for i in range(connections)]
    start = time.perf_counter()
    parts = await asyncio.gather(*(send_all(port, share) for share in shares))
    elapsed = time.perf_counter() - start
    return len(texts) / elapsed, [t for part in parts for t in part]


def seed_studies(data: Path, patients: int) -> None:
    """One stored study for each patient the updates name (pydicom's CT, renamed)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder = data.parent / "seed"
    folder.mkdir()
    for n in range(patients):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientID, ds.PatientName = f"S{n}", f"DOE^SEED{n}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / f"{n}.dcm")
    subprocess.run(
        [TESSERA, "import", str(folder), "--data", str(data)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def serving(data: Path) -> tuple[subprocess.Popen, int]:
    hl7_port = free_port()
    env = {**os.environ, "TESSERA_HL7_PORT": str(hl7_port)}
    argv = [TESSERA, "serve", "--data", str(data), "--port", str(free_port())]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", hl7_port), timeout=1).close()
            return proc, hl7_port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the hub's HL7 listener did not come up")


def row(label: str, connections: int, rate: float, latencies: list[float]) -> str:
    ms = sorted(t * 1000 for t in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"| {label} | {connections} | {len(ms)} | {rate:.0f} | "
        f"{statistics.median(ms):.2f} | {p99:.2f} |"
    )


def measure(messages: int, connections: list[int], patients: int) -> str:
    rows = [
        "| messages | connections | sent | messages/s with ACK | ACK p50 ms | ACK p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        seed_studies(data, patients)
        proc, port = serving(data)
        try:
            base = 0
            for c in connections:
                orders = [order(base + n) for n in range(messages)]
                rate, latencies = asyncio.run(run(port, orders, c))
                rows.append(row("ORM^O01 NW (new step)", c, rate, latencies))
                updates = [update(base + n, patients) for n in range(messages)]
                rate, latencies = asyncio.run(run(port, updates, c))
                rows.append(row("ADT^A08 (patient with a study)", c, rate, latencies))
                base += messages
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="per kind and connection count")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--patients", type=int, default=50, help="patients the updates name")
    parser.add_argument("--append", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    result = measure(args.messages, args.connections, args.patients)
    print(result)
    if args.append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = (
            f"`.venv/bin/python bench/hl7_bench.py --messages {args.messages} --connections "
            f"{' '.join(map(str, args.connections))} --patients {args.patients}`"
        )
        with RESULTS.open("a") as f:
            f.write(
                f"\n## HL7 messages with ACK, {stamp}\n\n"
                f"Load average {load:.2f} at the start. {command}\n\n{result}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
