"""Backup, verify and restore through the commands users run, on real DICOM files."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from backup_support import (
    manifest_files,
    sample_paths,
    spawn,
    stored_objects,
    target_blobs,
    tessera,
    variants,
    wait_for,
)


def backup(data: Path, target: Path) -> None:
    result = tessera("backup", str(target), data=data)
    assert result.returncode == 0, result.stdout + result.stderr


def test_backup_then_restore_gives_back_every_object(archive: Path, tmp_path: Path) -> None:
    target, restored = tmp_path / "target", tmp_path / "restored"
    backup(archive, target)
    result = tessera("restore", str(target), "--to", str(restored), data=archive)
    assert result.returncode == 0, result.stdout + result.stderr
    original = stored_objects(archive)
    assert len(original) == len(sample_paths())
    assert stored_objects(restored) == original
    report = json.loads((restored / "restore-report.json").read_text())
    assert report["clean"] and report["verify"]["checked"] == len(original)
    assert report["blobs"] == len(original) and report["seconds_to_first_study"] is not None
    assert not (target / "keys").exists() and not list(target.rglob("*.key"))


def test_a_second_backup_copies_nothing_and_extends_the_chain(
    archive: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    backup(archive, target)
    again = tessera("backup", str(target), data=archive)
    assert again.returncode == 0 and " 0 copied" in again.stdout, again.stdout
    first, second = (json.loads(p.read_text())["manifest"] for p in manifest_files(target))
    assert first["previous"] is None and second["previous"] is not None
    assert second["blob_count"] == first["blob_count"] == len(sample_paths())
    checked = tessera("backup", "verify", str(target), "--read-data", data=archive)
    assert checked.returncode == 0, checked.stdout
    assert f"2 backups, latest {second['name']}" in checked.stdout
    assert f"{len(sample_paths())} read back" in checked.stdout
    assert list((target / "records").glob("verify-*.json"))


KILLED_OBJECTS = 150


@pytest.fixture
def larger_archive(tmp_path: Path) -> Path:
    data = tmp_path / "larger"
    paths = variants(tmp_path / "variants", KILLED_OBJECTS)
    imported = tessera("import", str(tmp_path / "variants"), data=data)
    assert imported.returncode == 0, imported.stderr
    assert len(stored_objects(data)) == len(paths)
    return data


def _kill_while(run, started, rng: random.Random, spread: float) -> None:
    """SIGKILL once the command is under way, at a random moment of its work."""
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: started() or run.poll() is not None)
    time.sleep(rng.uniform(0.0, spread))  # the kill point; the checks hold wherever it lands
    run.kill()
    run.wait()


def test_a_killed_backup_leaves_no_manifest_and_the_next_run_completes(
    larger_archive: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    rng = random.Random(7)
    for _ in range(12):
        run = spawn("backup", str(target), data=larger_archive)
        _kill_while(run, lambda: (target / "tmp").exists(), rng, spread=1.0)
        for manifest in manifest_files(target):  # a manifest is whole, or absent
            body = json.loads(manifest.read_text())["manifest"]
            assert body["blob_count"] == KILLED_OBJECTS, body
    backup(larger_archive, target)
    checked = tessera("backup", "verify", str(target), "--read-data", data=larger_archive)
    assert checked.returncode == 0, checked.stdout
    restored = tmp_path / "restored"
    result = tessera("restore", str(target), "--to", str(restored), data=larger_archive)
    assert result.returncode == 0, result.stdout
    assert stored_objects(restored) == stored_objects(larger_archive)


def test_a_killed_restore_is_redone_into_a_fresh_folder(
    larger_archive: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    backup(larger_archive, target)
    rng = random.Random(11)
    for n in range(8):
        dest = tmp_path / f"attempt-{n}"
        run = spawn("restore", str(target), "--to", str(dest), data=larger_archive)
        _kill_while(run, dest.exists, rng, spread=1.0)
        if (dest / "restore-report.json").exists():  # it finished before the kill
            assert stored_objects(dest) == stored_objects(larger_archive)
        elif dest.exists() and any(dest.iterdir()):
            refused = tessera("restore", str(target), "--to", str(dest), data=larger_archive)
            assert refused.returncode == 2 and "is not empty" in refused.stdout, refused.stdout
    final = tmp_path / "final"
    result = tessera("restore", str(target), "--to", str(final), data=larger_archive)
    assert result.returncode == 0, result.stdout
    assert stored_objects(final) == stored_objects(larger_archive)


def _corrupt(path: Path, how: str) -> None:
    path.chmod(0o644)
    data = path.read_bytes()
    if how == "flip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_blob_in_the_target_is_named(archive: Path, tmp_path: Path, how: str) -> None:
    target = tmp_path / "target"
    backup(archive, target)
    sha, sop_uid = next(iter(_blob_of_each_sop(archive).items()))
    _corrupt(next(p for p in target_blobs(target) if p.name == sha), how)

    checked = tessera("backup", "verify", str(target), "--read-data", data=archive)
    assert checked.returncode == 1 and sha in checked.stdout, checked.stdout
    restored = tmp_path / "restored"
    result = tessera("restore", str(target), "--to", str(restored), data=archive)
    assert result.returncode == 1, result.stdout
    assert f"damaged: {sha} ({sop_uid})" in result.stdout, result.stdout


def _blob_of_each_sop(data: Path) -> dict[str, str]:
    conn = sqlite3.connect(data / "index.sqlite")
    try:
        return dict(conn.execute("SELECT sha256, sop_uid FROM instances ORDER BY sop_uid"))
    finally:
        conn.close()


def test_an_edited_manifest_is_refused(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    backup(archive, target)
    path = manifest_files(target)[0]
    sealed = json.loads(path.read_text())
    sealed["manifest"]["blob_count"] += 1
    path.write_text(json.dumps(sealed))
    for argv in (
        ("backup", "verify", str(target)),
        ("restore", str(target), "--to", str(tmp_path / "r")),
    ):
        result = tessera(*argv, data=archive)
        assert result.returncode in (1, 2) and "signature does not match" in result.stdout, result


def test_a_removed_or_replayed_manifest_breaks_the_chain(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    for _ in range(3):
        backup(archive, target)
    first, middle, _last = manifest_files(target)
    kept = middle.read_bytes()
    middle.unlink()
    result = tessera("backup", "verify", str(target), data=archive)
    assert result.returncode == 1 and "chain is broken" in result.stdout, result.stdout

    middle.write_bytes(kept)
    replay = target / "manifests" / "29991231T000000000000Z.json"
    shutil.copy(first, replay)  # an old manifest shown as the newest
    result = tessera("restore", str(target), "--to", str(tmp_path / "r"), data=archive)
    assert result.returncode == 2 and "a copy of another backup's" in result.stdout, result.stdout


def test_a_manifest_signed_by_another_key_is_refused(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    backup(archive, target)
    stranger = tmp_path / "stranger"
    assert tessera("backup", str(tmp_path / "elsewhere"), data=stranger).returncode == 0
    result = tessera(
        "restore", str(target), "--to", str(tmp_path / "r"),
        "--public-key", str(tmp_path / "elsewhere" / "signing.pub"), data=archive,
    )  # fmt: skip
    assert result.returncode == 2 and "signature does not match" in result.stdout, result.stdout
    other = tessera("backup", str(target), data=stranger)
    assert other.returncode == 2 and "signed by key" in other.stdout, other.stdout


def test_a_missing_blob_list_is_named(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    backup(archive, target)
    listed = json.loads(manifest_files(target)[0].read_text())["manifest"]["blob_list"]["sha256"]
    _corrupt(next(p for p in target_blobs(target) if p.name == listed), "delete")
    result = tessera("restore", str(target), "--to", str(tmp_path / "r"), data=archive)
    assert result.returncode == 2 and "blob list of this backup is missing" in result.stdout


def test_bit_rot_at_the_source_is_found_while_backing_up(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    sha, sop_uid = next(iter(_blob_of_each_sop(archive).items()))
    _corrupt(archive / "blobs" / sha[:2] / sha[2:4] / sha, "flip")
    result = tessera("backup", str(target), data=archive)
    assert result.returncode == 1, result.stdout
    assert f"unreadable: {sha} ({sop_uid})" in result.stdout, result.stdout
    restored = tessera("restore", str(target), "--to", str(tmp_path / "r"), data=archive)
    assert restored.returncode == 1 and "unreadable when it was backed up" in restored.stdout


def test_ransomware_drill_restores_from_before_the_infection(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    backup(archive, target)
    original = stored_objects(archive)
    public_key = tmp_path / "kept-apart.pub"  # the recovery copy, kept off the hub
    shutil.copy(target / "signing.pub", public_key)
    before = json.loads(manifest_files(target)[0].read_text())["manifest"]["created"]

    for path in archive.rglob("*"):  # the data folder, keys included, encrypted by an attacker
        if path.is_file():
            path.chmod(0o600)
            path.write_bytes(random.randbytes(max(16, path.stat().st_size)))
    restored = tmp_path / "restored"
    result = tessera(
        "restore", str(target), "--to", str(restored), "--at", before,
        "--public-key", str(public_key), data=tmp_path / "new-hub",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_objects(restored) == original
    audit = tessera("audit", "verify", data=restored)
    assert audit.returncode in (0, 1) and "tamper" not in audit.stdout.lower(), audit.stdout
