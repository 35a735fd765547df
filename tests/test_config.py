"""Typed settings: every section parsed once in hub.config, unknown or ill-typed keys named, and
no other module reading the environment."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import (
    DimseSettings,
    S3Settings,
    Settings,
    SettingsError,
    StorageSettings,
    sections,
)

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("hub", "telehealth", "wsi", "web")
# Not a setting: the wsi library (which imports nothing of the hub) caps OpenBLAS's threads for
# its own process before numpy loads. This exact line, and no other, may touch the environment.
SETS_A_LIBRARY_DEFAULT = ("wsi/cli.py", 'os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")')


def _extra(**extra) -> dict[str, str]:
    return {"TESSERA_EXTRA": json.dumps(extra)}


def test_the_documented_variables_still_work(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "TESSERA_DATA": str(tmp_path),
            "TESSERA_DUPLICATES": "version",
            "TESSERA_WORKERS": "3",
            "TESSERA_CORS_ORIGINS": "https://a.example, https://b.example",
            "TESSERA_HTTP_HEADER_SECONDS": "5",
            "TESSERA_TELEHEALTH_ICE": "auto+loopback",
            "TESSERA_ADMIN_PASSWORD": "set by the installer",
            **_extra(dimse_timeout=3, convert_workers=2, telehealth={"max_sessions": 5}),
        }
    )
    assert (s.data_dir, s.duplicate_policy, s.workers) == (tmp_path, "version", 3)
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.http_header_seconds == 5.0
    assert s.dimse == DimseSettings(timeout=3.0)
    assert s.jobs.convert_workers == 2
    assert (s.telehealth.ice_candidates, s.telehealth.max_sessions) == ("auto+loopback", 5)
    assert s.security.admin_password == "set by the installer"
    assert "set by the installer" not in repr(s)


def test_storage_settings_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "TESSERA_STORAGE_BACKEND": "s3",
            "TESSERA_S3_ENDPOINT": "http://127.0.0.1:8333",
            "TESSERA_S3_BUCKET": "slides",
            "TESSERA_S3_ACCESS_KEY_ID": "id",
            "TESSERA_S3_SECRET_ACCESS_KEY": "secret",
            "TESSERA_S3_ALLOW_HTTP": "yes",
            "TESSERA_CACHE_BYTES": "1048576",
            "TESSERA_STORE_KEY_FILE": "/keys/store.key",
        }
    )
    assert s.storage == StorageSettings(
        backend="s3",
        s3=S3Settings(
            endpoint="http://127.0.0.1:8333",
            bucket="slides",
            access_key_id="id",
            secret_access_key="secret",
            allow_http=True,
        ),
        cache_bytes=1024**2,
        encryption_key_file=Path("/keys/store.key"),
    )
    assert "secret" not in repr(s.storage)


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        (_extra(forwrd={}), "TESSERA_EXTRA forwrd"),
        (_extra(forward={"batchsize": 4}), "TESSERA_EXTRA forward.batchsize"),
        (_extra(storage={"s3": {"bucket": "b", "secret": "x"}}), "TESSERA_EXTRA storage.s3.secret"),
        (_extra(dimse_timeuot=3), "TESSERA_EXTRA dimse_timeuot"),
        ({"TESSERA_DIMSE_PROT": "104"}, "TESSERA_DIMSE_PROT"),
        ({"TESSERA_S3_SECRET": "x"}, "TESSERA_S3_SECRET"),
        ({"TESSERA_WORKRES": "2"}, "TESSERA_WORKRES"),
        ({"TESSERA_BACKUP_EVERY": "24"}, "TESSERA_BACKUP_EVERY"),
        (_extra(backup={"interval": 24}), "TESSERA_EXTRA backup.interval"),
    ],
)
def test_an_unknown_key_is_named(environ: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


def test_a_near_miss_is_pointed_at_the_setting() -> None:
    with pytest.raises(SettingsError, match="did you mean TESSERA_DIMSE_PORT"):
        Settings.from_env({"TESSERA_DIMSE_PROT": "104"})
    with pytest.raises(SettingsError, match="did you mean 'batch_size'"):
        Settings.from_env(_extra(forward={"batchsize": 4}))


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"TESSERA_DIMSE_PORT": "one-o-four"}, "TESSERA_DIMSE_PORT"),
        ({"TESSERA_HTTP_IDLE_SECONDS": "-1"}, "TESSERA_HTTP_IDLE_SECONDS"),
        ({"TESSERA_DUPLICATES": "keep"}, "TESSERA_DUPLICATES"),
        ({"TESSERA_S3_ALLOW_HTTP": "perhaps"}, "TESSERA_S3_ALLOW_HTTP"),
        ({"TESSERA_TELEHEALTH_ICE": "everywhere"}, "TESSERA_TELEHEALTH_ICE"),
        (_extra(dimse_timeout="soon"), "TESSERA_EXTRA dimse.timeout"),
        (_extra(dimse_max_associations=2.5), "TESSERA_EXTRA dimse.max_associations"),
        (_extra(dimse_allowed_aes="GOODSCU"), "TESSERA_EXTRA dimse.allowed_aes"),
        (_extra(forward={"enabled": "no"}), "TESSERA_EXTRA forward.enabled"),
        (_extra(telehealth={"max_sessions": True}), "TESSERA_EXTRA telehealth.max_sessions"),
        (_extra(forward=[]), "TESSERA_EXTRA forward"),
        ({"TESSERA_EXTRA": "{not json"}, "TESSERA_EXTRA"),
        ({"TESSERA_BACKUP_INTERVAL_HOURS": "daily"}, "TESSERA_BACKUP_INTERVAL_HOURS"),
        ({"TESSERA_BACKUP_VERIFY_READ_PERCENT": "-5"}, "TESSERA_BACKUP_VERIFY_READ_PERCENT"),
        (_extra(backup={"target": 7}), "TESSERA_EXTRA backup.target"),
    ],
)
def test_an_ill_typed_value_is_named(environ: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    assert caught.value.key == key


def test_a_lease_shorter_than_two_heartbeats_is_refused() -> None:
    with pytest.raises(SettingsError, match="must be at least twice heartbeat_seconds"):
        Settings.from_env(
            {"TESSERA_LEASE_SECONDS": "3", **_extra(cluster={"heartbeat_seconds": 2})}
        )
    with pytest.raises(SettingsError, match="heartbeat_seconds must be more than 0"):
        Settings.from_env(_extra(cluster={"heartbeat_seconds": 0}))
    assert Settings.from_env({"TESSERA_LEASE_SECONDS": "4"}).cluster.lease_seconds == 4.0


def test_backup_settings_from_the_environment(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "TESSERA_BACKUP_TARGET": str(tmp_path / "backups"),
            "TESSERA_BACKUP_INTERVAL_HOURS": "0.25",
            "TESSERA_BACKUP_VERIFY_READ_PERCENT": "5",
        }
    )
    assert s.backup.target == str(tmp_path / "backups") and s.backup.scheduled
    assert s.backup.interval_seconds == 900 and s.backup.verify_read_percent == 5
    assert not Settings.from_env({}).backup.scheduled  # off by default
    assert Settings.from_json(s.to_json()).backup == s.backup


def test_a_backup_schedule_needs_a_target_and_a_percentage() -> None:
    with pytest.raises(SettingsError, match="interval_hours needs a target") as caught:
        Settings.from_env({"TESSERA_BACKUP_INTERVAL_HOURS": "24"})
    assert caught.value.key == "TESSERA_EXTRA backup"
    with pytest.raises(SettingsError, match="verify_read_percent must be between 0 and 100"):
        Settings.from_env({"TESSERA_BACKUP_VERIFY_READ_PERCENT": "150"})


def test_the_retired_acl_key_says_what_replaced_it() -> None:
    with pytest.raises(SettingsError, match="tessera ae allow"):
        Settings.from_env(_extra(dimse_acl={}))


def test_other_variables_of_that_prefix_stay_free() -> None:
    """A test harness's variable, or a token a forwarding target names, is not a setting."""
    forward = {"targets": {"vna": {"type": "stow", "url": "https://vna", "token_env": "TESSERA_X"}}}
    s = Settings.from_env(
        {"TESSERA_TEST_POSTGRES": "postgresql://", "TESSERA_X": "t", **_extra(forward=forward)}
    )
    assert s.environ["TESSERA_X"] == "t"


def test_settings_pass_to_a_reader_process_whole(tmp_path: Path) -> None:
    s = Settings(
        data_dir=tmp_path,
        cors_origins=["https://a.example"],
        **sections(
            forward={"targets": {"pacs": {"host": "h", "port": 104, "called_ae": "PACS"}}},
            dimse_move_destinations={"DEST": ["127.0.0.1", 11113]},
            storage={"encryption_key_file": str(tmp_path / "store.key")},
        ),
    )
    again = Settings.from_json(s.to_json())
    assert again == s
    assert isinstance(again.storage.encryption_key_file, Path)


def test_flags_win_over_the_environment(tmp_path: Path) -> None:
    s = Settings.from_env({"TESSERA_AE_TITLE": "ENV"}, ae_title="FLAG", port=None)
    assert (s.ae_title, s.port) == ("FLAG", 8080)


def test_the_command_line_names_the_key_and_exits_2(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TESSERA_DATA": str(tmp_path),
        "TESSERA_DIMSE_PORT": "one-o-four",
    }
    run = subprocess.run(
        [sys.executable, "-m", "hub.cli", "verify"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "TESSERA_DIMSE_PORT" in run.stderr
    assert "Traceback" not in run.stderr


def _reads_environment(tree: ast.AST) -> list[int]:
    """Lines that touch ``os.environ``, ``os.getenv`` or ``os.putenv``, however imported."""
    names = {"environ", "getenv", "environb", "getenvb", "putenv", "unsetenv"}
    lines = []
    for node in ast.walk(tree):
        attribute = (
            isinstance(node, ast.Attribute)
            and node.attr in names
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )
        imported = (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in names for alias in node.names)
        )
        if attribute or imported:
            lines.append(node.lineno)
    return lines


def test_nothing_but_hub_config_reads_the_environment() -> None:
    found = []
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.py")):
            if "node_modules" in path.parts or path == REPO / "hub" / "config.py":
                continue
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            name = str(path.relative_to(REPO))
            found += [
                f"{name}:{n}: {lines[n - 1].strip()}"
                for n in _reads_environment(ast.parse(text, filename=name))
                if (name, lines[n - 1].strip()) != SETS_A_LIBRARY_DEFAULT
            ]
    assert found == []


def test_the_source_check_sees_every_spelling() -> None:
    spellings = [
        "import os\nos.environ.get('X')",
        "import os\nos.getenv('X')",
        "from os import environ",
        "from os import getenv as g",
    ]
    assert all(_reads_environment(ast.parse(code)) for code in spellings)
