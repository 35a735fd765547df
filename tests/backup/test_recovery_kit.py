"""The recovery kit (``tessera backup init``): an encrypted archive backed up to a receiver,
restored onto a machine that has none of its keys, with the kit's passphrase."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import ReceiverProcess, sample_paths, tessera
from hubtest import free_port

from hub.archive.blobs.local import LocalBlobStore
from hub.security.at_rest import EncryptedBlobStore
from hub.security.keys import parse_key

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    running = ReceiverProcess(tmp_path / "receiver", free_port())
    yield running
    running.stop()


@pytest.fixture
def hub_env(tmp_path: Path, receiver: ReceiverProcess) -> dict[str, str]:
    """An encrypting hub's environment: its store key lives apart from the data folder."""
    return receiver.env | {"TESSERA_STORE_KEY_FILE": str(tmp_path / "hub-keys" / "store.key")}


@pytest.fixture
def encrypted_archive(tmp_path: Path, hub_env: dict[str, str], receiver: ReceiverProcess) -> Path:
    data = tmp_path / "data"
    imported = tessera("import", *map(str, sample_paths()), data=data, env=hub_env)
    assert imported.returncode == 0, imported.stderr
    kit_env = hub_env | {"KIT_PASSPHRASE": PASSPHRASE}
    made = tessera(
        "backup", "init", receiver.url, "--passphrase-env", "KIT_PASSPHRASE",
        data=data, env=kit_env,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    backed_up = tessera("backup", receiver.url, data=data, env=hub_env)
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    return data


def restore_on_a_new_machine(
    receiver: ReceiverProcess, tmp_path: Path, dest: Path, passphrase: str
) -> object:
    new_machine = tmp_path / "new-hub"  # no keys/, no store key configured
    return tessera(
        "restore", receiver.url, "--to", str(dest),
        "--recovery-kit-passphrase-env", "KIT_PASSPHRASE",
        data=new_machine, env=receiver.env | {"KIT_PASSPHRASE": passphrase},
    )  # fmt: skip


def test_the_kit_restores_an_encrypted_archive_onto_a_machine_without_keys(
    encrypted_archive: Path, receiver: ReceiverProcess, tmp_path: Path
) -> None:
    kit = json.loads((receiver.root / "recovery-kit.json").read_text())
    manifest = json.loads(next((receiver.root / "manifests").glob("*.json")).read_text())
    assert manifest["manifest"]["encrypted"]
    assert kit["key_ids"] == manifest["manifest"]["key_ids"]
    assert set(kit["key_ids"]) == {"signing", "audit", "store"}
    store_key = (tmp_path / "hub-keys" / "store.key").read_text().strip()
    audit_key = (encrypted_archive / "keys" / "audit.key").read_text().strip()
    assert store_key not in json.dumps(kit) and audit_key not in json.dumps(kit)

    restored = tmp_path / "restored"
    result = restore_on_a_new_machine(receiver, tmp_path, restored, PASSPHRASE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify: clean" in result.stdout, result.stdout
    assert (restored / "keys" / "store.key").read_text().strip() == store_key
    assert (restored / "keys" / "audit.key").read_text().strip() == audit_key
    assert (restored / "keys" / "store.key").stat().st_mode & 0o777 == 0o600

    originals = {hashlib.sha256(p.read_bytes()).hexdigest(): p.read_bytes() for p in sample_paths()}
    assert asyncio.run(read_all(restored)) == originals

    audit = tessera(
        "audit", "verify", data=restored,
        env={"TESSERA_STORE_KEY_FILE": str(restored / "keys" / "store.key")},
    )  # fmt: skip
    assert audit.returncode == 0, audit.stdout + audit.stderr


async def read_all(data: Path) -> dict[str, bytes]:
    """Every restored object, decrypted with the restored store key."""
    key = parse_key((data / "keys" / "store.key").read_text(), what="restored store key")
    inner = LocalBlobStore(data / "blobs", data / "tmp")
    store = EncryptedBlobStore(inner, key, tmp_dir=data / "tmp")
    found = {}
    try:
        async for info in inner.iterate():
            found[info.sha256] = b"".join([block async for block in store.stream(info.sha256)])
    finally:
        await inner.close()
    assert all(b"DICM" not in (data / "blobs").joinpath(n[:2], n[2:4], n).read_bytes()
               for n in found)  # fmt: skip
    return found


def test_a_wrong_passphrase_fails_cleanly_and_writes_nothing(
    encrypted_archive: Path, receiver: ReceiverProcess, tmp_path: Path
) -> None:
    restored = tmp_path / "restored"
    result = restore_on_a_new_machine(receiver, tmp_path, restored, "not the passphrase")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "passphrase does not open the recovery kit" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr
    assert not restored.exists()


def test_a_target_keeps_its_first_kit_and_a_short_passphrase_is_refused(
    encrypted_archive: Path, receiver: ReceiverProcess, hub_env: dict[str, str]
) -> None:
    before = (receiver.root / "recovery-kit.json").read_bytes()
    for passphrase in (PASSPHRASE, "short"):
        again = tessera(
            "backup", "init", receiver.url, "--passphrase-env", "KIT_PASSPHRASE",
            data=encrypted_archive, env=hub_env | {"KIT_PASSPHRASE": passphrase},
        )  # fmt: skip
        assert again.returncode == 2 and "recovery kit already" in again.stdout, again.stdout
    assert (receiver.root / "recovery-kit.json").read_bytes() == before

    folder = encrypted_archive.parent / "folder-target"
    short = tessera(
        "backup", "init", str(folder), "--passphrase-env", "KIT_PASSPHRASE",
        data=encrypted_archive, env=hub_env | {"KIT_PASSPHRASE": "short"},
    )  # fmt: skip
    assert short.returncode == 2 and "at least 12 characters" in short.stdout, short.stdout
    assert not (folder / "recovery-kit.json").exists()
