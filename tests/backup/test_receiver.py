"""Backups to an append-only receiver (``tessera backup-receiver``) in a process of its own,
on loopback: the commands users run against it, and what the hub's own token cannot do."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import (
    ReceiverProcess,
    sample_paths,
    spawn,
    stored_objects,
    tessera,
    variants,
    wait_for,
)
from hubtest import free_port

from hub.backup.status import _target_records
from hub.config import Settings


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    running = ReceiverProcess(tmp_path / "receiver", free_port())
    yield running
    running.stop()


def backup(data: Path, receiver: ReceiverProcess) -> str:
    result = tessera("backup", receiver.url, data=data, env=receiver.env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def call(
    receiver: ReceiverProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = None,
    **headers: str,
) -> tuple[int, dict]:
    """One request, its path sent exactly as given (no client tidies a ``..`` away)."""
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=30)
    try:
        headers["Authorization"] = f"Bearer {receiver.token if token is None else token}"
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        text = response.read()
        try:
            return response.status, json.loads(text) if text else {}
        except ValueError:
            return response.status, {"text": text.decode(errors="replace")}
    finally:
        conn.close()


def objects(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "tmp" not in p.relative_to(root).parts
    }


def test_backup_verify_and_restore_through_the_receiver(
    archive: Path, receiver: ReceiverProcess, tmp_path: Path
) -> None:
    backup(archive, receiver)
    again = backup(archive, receiver)
    assert " 0 copied" in again, again
    checked = tessera(
        "backup", "verify", receiver.url, "--read-data", data=archive, env=receiver.env
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 backups, latest" in checked.stdout
    assert f"{len(sample_paths())} read back" in checked.stdout

    restored = tmp_path / "restored"
    result = tessera("restore", receiver.url, "--to", str(restored), data=archive, env=receiver.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_objects(restored) == stored_objects(archive)
    assert len(stored_objects(restored)) == len(sample_paths())
    assert not (receiver.root / "keys").exists() and not list(receiver.root.rglob("*.key"))

    # The receiver's folder is a folder target: it restores on the backup host as well.
    local = tmp_path / "restored-locally"
    result = tessera("restore", str(receiver.root), "--to", str(local), data=archive)
    assert result.returncode == 0, result.stdout
    assert stored_objects(local) == stored_objects(archive)


def test_the_hubs_token_can_neither_delete_nor_overwrite(
    archive: Path, receiver: ReceiverProcess
) -> None:
    backup(archive, receiver)
    before = objects(receiver.root)
    manifest = next(n for n in before if n.startswith("manifests/"))
    blob = next(n for n in before if n.startswith("blobs/"))
    blob_name = "blobs/" + Path(blob).name

    for name in (manifest, blob_name, "signing.pub"):
        status, _ = call(receiver, "DELETE", f"/objects/{name}")
        assert status == 405, name

    other = b'{"manifest": "forged"}'
    status, answer = call(
        receiver, "PUT", f"/objects/{manifest}", other,
        **{"X-Content-SHA256": hashlib.sha256(other).hexdigest()},
    )  # fmt: skip
    assert status == 409 and "never overwrites" in answer["detail"], answer
    same = before[manifest]
    status, _ = call(
        receiver, "PUT", f"/objects/{manifest}", same,
        **{"X-Content-SHA256": hashlib.sha256(same).hexdigest()},
    )  # fmt: skip
    assert status == 200  # the same bytes again: nothing to do
    noise = b"encrypted by an attacker"
    status, answer = call(
        receiver, "PUT", f"/objects/{blob_name}", noise,
        **{"X-Content-SHA256": hashlib.sha256(noise).hexdigest()},
    )  # fmt: skip
    assert status == 409, answer
    assert objects(receiver.root) == before

    checked = tessera(
        "backup", "verify", receiver.url, "--read-data", data=archive, env=receiver.env
    )
    assert checked.returncode == 0, checked.stdout


def test_bad_requests_are_refused_with_a_reason_and_store_nothing(
    receiver: ReceiverProcess, tmp_path: Path
) -> None:
    body = b"some bytes"
    sha = hashlib.sha256(body).hexdigest()
    for path in (
        "/objects/../../escaped.json",
        "/objects/manifests/..%2F..%2Fescaped.json",
        "/objects/manifests/../../escaped.json",
        "/objects/blobs/../../../escaped",
        "/objects/%2e%2e/escaped.json",
        "/objects/keys/audit.key",
    ):
        status, answer = call(receiver, "PUT", path, body, **{"X-Content-SHA256": sha})
        assert status == 400 and "not an object name" in answer["detail"], (path, answer)

    status, answer = call(receiver, "PUT", f"/objects/blobs/{'0' * 64}", body)
    assert status == 422 and "nothing stored" in answer["detail"], answer
    status, answer = call(
        receiver, "PUT", "/objects/manifests/x.json", body, **{"X-Content-SHA256": "0" * 64}
    )
    assert status == 422, answer
    status, answer = call(
        receiver, "PUT", "/objects/manifests/x.json", None,
        **{"X-Content-SHA256": sha, "Content-Length": str(1 << 40)},
    )  # fmt: skip
    assert status == 413 and "larger than" in answer["detail"], answer

    status, answer = call(receiver, "PUT", f"/objects/blobs/{sha}", body, token="wrong" * 10)
    assert status == 401 and "token" in answer["detail"], answer
    status, _ = call(receiver, "GET", "/list?prefix=manifests/", token="")
    assert status == 401
    status, answer = call(receiver, "GET", "/list?prefix=../")
    assert status == 400, answer

    assert objects(receiver.root) == {}
    assert not list(tmp_path.glob("escaped*")) and not list(tmp_path.rglob("escaped*"))

    status, _ = call(receiver, "PUT", f"/objects/blobs/{sha}", body)
    assert status == 201  # the same receiver takes a good object
    status, _ = call(receiver, "GET", f"/objects/blobs/{sha}", Range="bytes=2-5")
    assert status == 206


def test_a_receiver_killed_mid_upload_keeps_no_partial_object(
    receiver: ReceiverProcess, tmp_path: Path
) -> None:
    body = bytes(range(256)) * 40_000  # 10 MB
    sha = hashlib.sha256(body).hexdigest()
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.sendall(
            f"PUT /objects/blobs/{sha} HTTP/1.1\r\nHost: receiver\r\n"
            f"Authorization: Bearer {receiver.token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        spools = receiver.root / "tmp"
        wait_for(lambda: any(p.stat().st_size > 0 for p in spools.glob("*.part")))
        receiver.kill()  # half of the body is in its spool
    assert objects(receiver.root) == {}
    receiver.start()
    assert not list((receiver.root / "tmp").glob("*.part"))
    status, _ = call(receiver, "HEAD", f"/objects/blobs/{sha}")
    assert status == 404


KILLED_OBJECTS = 120


def test_a_backup_whose_receiver_is_killed_completes_on_the_next_run(
    receiver: ReceiverProcess, tmp_path: Path
) -> None:
    data = tmp_path / "larger"
    variants(tmp_path / "variants", KILLED_OBJECTS)
    imported = tessera("import", str(tmp_path / "variants"), data=data)
    assert imported.returncode == 0, imported.stderr

    run = spawn("backup", receiver.url, data=data, env=receiver.env)
    blobs = receiver.root / "blobs"
    wait_for(lambda: run.poll() is not None or len(list(blobs.glob("??/??/*"))) >= 5)
    os.kill(receiver.proc.pid, signal.SIGSTOP)  # held where it is: the backup is under way
    assert not list((receiver.root / "manifests").glob("*.json")), "it finished before the kill"
    receiver.kill()
    assert run.wait(timeout=120) == 2  # the receiver went away: a clear error, no manifest
    assert not list((receiver.root / "manifests").glob("*.json"))
    for path in blobs.glob("??/??/*"):  # every object there is whole
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name

    receiver.start()
    backup(data, receiver)
    checked = tessera("backup", "verify", receiver.url, "--read-data", data=data, env=receiver.env)
    assert checked.returncode == 0, checked.stdout
    restored = tmp_path / "restored"
    result = tessera("restore", receiver.url, "--to", str(restored), data=data, env=receiver.env)
    assert result.returncode == 0, result.stdout
    assert stored_objects(restored) == stored_objects(data)


def test_a_scheduled_run_backs_up_to_the_receiver(archive: Path, receiver: ReceiverProcess) -> None:
    """The run the server's backup duty starts (``python -m hub.backup.scheduled``), and the
    target's side of ``GET /api/backup/status``."""
    settings = Settings.from_env(
        {"TESSERA_BACKUP_TARGET": receiver.url, "TESSERA_BACKUP_INTERVAL_HOURS": "1"}
        | receiver.env,
        data_dir=archive,
    )
    run = subprocess.run(
        [sys.executable, "-m", "hub.backup.scheduled"],
        input=settings.to_json() + "\n", capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["outcome"] == "success", outcome
    assert outcome["objects"] == len(sample_paths()) and outcome["verify"]["clean"]
    backup, verify = asyncio.run(_target_records(settings.backup))
    assert backup["name"] == outcome["manifest"] and verify["outcome"] == "clean"
