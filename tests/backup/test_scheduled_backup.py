"""Scheduled backups in a running ``tessera serve``: a short interval, a real DICOM object sent
by STOW-RS, the status an administrator reads, and a restore from what the schedule wrote."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from backup_support import stored_objects, tessera, wait_for
from hubtest import HubProcess, free_port
from pydicom.data import get_testdata_file

from hub.backup.check import _sample
from hub.backup.manifest import BlobRef

EVERY_TWO_SECONDS = str(2 / 3600)  # backup.interval_hours
BOUNDARY = "scheduled-backup"


def _token(data: Path, user: str, role: str) -> str:
    added = tessera("user", "add", user, "--role", role, "--no-password", data=data)
    assert added.returncode == 0, added.stderr
    issued = tessera("user", "token", user, data=data)
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.strip().splitlines()[-1]


class Hub:
    """``tessera serve`` with a backup schedule; its log is read as it comes (a full pipe would
    stall the server) and kept for the failure message."""

    def __init__(self, data: Path, target: Path) -> None:
        self.admin = _token(data, "backup-admin", "admin")
        self.clinic = _token(data, "a-clinic", "clinic")
        env = {
            "TESSERA_BACKUP_TARGET": str(target),
            "TESSERA_BACKUP_INTERVAL_HOURS": EVERY_TWO_SECONDS,
            "TESSERA_BACKUP_VERIFY_READ_PERCENT": "50",
        }
        self.process = HubProcess(data, free_port(), env=env)
        self.url = self.process.url
        self.log: list[str] = []
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        for line in self.process.proc.stdout:
            self.log.append(line)

    def call(self, method: str, path: str, token: str | None, body: bytes | None = None, **headers):
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def status(self) -> dict:
        code, body = self.call("GET", "/api/backup/status", self.admin)
        assert code == 200, body
        return json.loads(body)

    def stow(self, data: bytes) -> int:
        body = b"".join(
            [
                f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
                data,
                f"\r\n--{BOUNDARY}--\r\n".encode(),
            ]
        )
        kind = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
        code, _ = self.call("POST", "/dicomweb/studies", self.admin, body, **{"Content-Type": kind})
        return code


@pytest.fixture
def hub_with(tmp_path: Path) -> Iterator:
    started: list[Hub] = []

    def start(target: Path) -> Hub:
        started.append(Hub(tmp_path / "data", target))
        return started[-1]

    yield start
    for hub in started:
        hub.process.stop()


def test_a_scheduled_backup_is_verified_reported_and_restores_byte_exact(
    hub_with, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    hub = hub_with(target)
    path = Path(get_testdata_file("CT_small.dcm"))
    sent = path.read_bytes()
    assert hub.stow(sent) == 200
    sop_uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID

    def backed_up_and_verified() -> bool:
        status = hub.status()
        run, backup, verify = status["last_run"], status["last_backup"], status["last_verify"]
        return (
            run is not None
            and run["outcome"] == "success"
            and run["objects"] == 1
            and backup is not None
            and backup["name"] == run["manifest"]
            and verify is not None
            and verify["backup"] == backup["name"]
        )

    wait_for(backed_up_and_verified, timeout=180)
    status = hub.status()
    assert status["target"] == str(target)
    assert status["stale"] is False and status["target_error"] is None
    assert status["schedule"] == {"interval_hours": 2 / 3600, "verify_read_percent": 50.0}
    assert status["held_by"] is not None and status["next_run"] is not None
    assert status["last_backup"]["objects"] == 1 and status["last_backup"]["age_seconds"] >= 0
    assert status["last_verify"]["outcome"] == "clean" and status["last_verify"]["read"] == 1
    assert status["last_run"]["verify"]["clean"] is True
    assert hub.call("GET", "/api/backup/status", hub.clinic)[0] == 403
    assert hub.call("GET", "/api/backup/status", None)[0] == 401
    hub.process.stop()

    restored = tmp_path / "restored"
    result = tessera("restore", str(target), "--to", str(restored), data=tmp_path / "data")
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_objects(restored) == {sop_uid: hashlib.sha256(sent).hexdigest()}


def test_a_broken_target_is_reported_retried_and_the_hub_serves_on(
    hub_with, tmp_path: Path
) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a folder\n")
    hub = hub_with(target)
    failures: list[str] = []

    def failed_twice() -> bool:
        run = hub.status()["last_run"]
        if run is not None and run["outcome"] == "failure" and run["started"] not in failures:
            failures.append(run["started"])
        return len(failures) >= 2

    wait_for(failed_twice, timeout=180)
    status = hub.status()
    assert "a-file" in status["last_run"]["error"], status
    assert status["stale"] is True and status["last_backup"] is None
    assert hub.stow(Path(get_testdata_file("MR_small.dcm")).read_bytes()) == 200
    assert hub.call("GET", "/dicomweb/studies", hub.admin)[0] == 200
    assert hub.process.proc.poll() is None
    assert any("scheduled backup failed" in line for line in hub.log)


def test_the_rolling_verify_reads_every_object_in_turn() -> None:
    refs = [BlobRef(f"{n:064x}", 1, f"{n:064x}") for n in range(10)]
    turns = [_sample(refs, 0.3, turn) for turn in range(4)]
    assert all(len(sample) == 3 for sample in turns)
    assert set().union(*turns) == set(refs)
