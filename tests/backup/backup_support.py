"""Helpers for the backup tests: an archive of real DICOM files, and the commands users run."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from pydicom.data import get_testdata_file

SAMPLES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtdose.dcm",
    "US1_J2KR.dcm",
    "JPEG2000.dcm",
    "SC_rgb.dcm",
    "emri_small.dcm",
    "MR2_J2KR.dcm",
]


def sample_paths() -> list[Path]:
    return [Path(get_testdata_file(name)) for name in SAMPLES]


def variants(folder: Path, count: int) -> list[Path]:
    """``count`` distinct CT objects (new UIDs, one study per ten), written into ``folder``."""
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    studies = [(generate_uid(), generate_uid()) for _ in range(max(1, count // 10))]
    paths = []
    for n in range(count):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = studies[n % len(studies)]
        ds.SOPInstanceUID = generate_uid()
        ds.StudyDate = f"2026{1 + n % 12:02d}01"
        paths.append(folder / f"{n}.dcm")
        ds.save_as(paths[-1])
    return paths


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not come about")
        time.sleep(0.02)


def tessera(
    *argv: str, data: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *argv, "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def spawn(*argv: str, data: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", *argv, "--data", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def stored_objects(data: Path) -> dict[str, str]:
    """SOP Instance UID -> sha256 of the stored file, read from a data folder's SQLite index
    and its blobs (the hash of the bytes on disk, not the name the index gives them)."""
    conn = sqlite3.connect(f"file:{data / 'index.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT sop_uid, sha256 FROM instances").fetchall()
    finally:
        conn.close()
    found = {}
    for sop_uid, sha in rows:
        blob = data / "blobs" / sha[:2] / sha[2:4] / sha
        found[sop_uid] = hashlib.sha256(blob.read_bytes()).hexdigest() if blob.exists() else ""
    return found


def manifest_files(target: Path) -> list[Path]:
    return sorted((target / "manifests").glob("*.json"))


def target_blobs(target: Path) -> list[Path]:
    return [p for p in (target / "blobs").glob("??/??/*") if p.is_file()]


class ReceiverProcess:
    """``tessera backup-receiver`` in a process of its own, on a loopback port; ``env`` is
    what a hub needs to reach it (the token file)."""

    def __init__(self, root: Path, port: int, *, extra: tuple[str, ...] = ()) -> None:
        self.root, self.port, self.extra = root, port, extra
        self.token_file = root.parent / f"{root.name}.token"
        self.url = f"http://127.0.0.1:{port}"
        self.env = {"TESSERA_BACKUP_TOKEN_FILE": str(self.token_file)}
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "hub.cli", "backup-receiver", "--append-only",
                "--dir", str(self.root), "--port", str(self.port),
                "--token-file", str(self.token_file), *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        wait_for(self._listening, timeout=60)

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the receiver exited: {self.proc.stdout.read()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc.stdout.close()
