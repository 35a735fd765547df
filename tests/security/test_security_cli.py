"""`tessera user|audit|ae` commands, run through an argparse parser the way hub.cli builds it."""

from __future__ import annotations

import argparse
import io
import sqlite3
from pathlib import Path

import pytest

from hub.security.cli import register


def tessera(data: Path, *argv: str, stdin: str | None = None, monkeypatch=None) -> int:
    parser = argparse.ArgumentParser(prog="tessera")
    register(parser.add_subparsers())
    args = parser.parse_args([*argv, "--data", str(data)])
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return args.func(args)


def test_user_lifecycle_and_tokens(tmp_path: Path, capsys, monkeypatch) -> None:
    pw = "a long enough password\n"
    assert tessera(tmp_path, "user", "add", "ann", "--role", "pathologist", "--password-stdin",
                   stdin=pw, monkeypatch=monkeypatch) == 0  # fmt: skip
    assert tessera(tmp_path, "user", "add", "ann", "--role", "clinic", "--no-password") == 1
    assert "exists" in capsys.readouterr().err
    assert tessera(tmp_path, "user", "add", "weak", "--role", "clinic", "--password-stdin",
                   stdin="short\n", monkeypatch=monkeypatch) == 1  # fmt: skip
    assert "at least 12" in capsys.readouterr().err

    assert tessera(tmp_path, "user", "token", "ann", "--scope", "dicomweb.read", "--days", "1") == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("tsr_")
    assert tessera(tmp_path, "user", "token", "ann", "--scope", "dicomweb.write") == 1
    assert "does not have: dicomweb.write" in capsys.readouterr().err

    assert tessera(tmp_path, "user", "token", "--list") == 0
    listing = capsys.readouterr().out
    assert "ann" in listing and "active" in listing and secret not in listing
    assert tessera(tmp_path, "user", "token", "--revoke", "1") == 0
    assert tessera(tmp_path, "user", "token", "--revoke", "1") == 1
    assert tessera(tmp_path, "user", "disable", "ann") == 0
    capsys.readouterr()
    assert tessera(tmp_path, "user", "list") == 0
    assert "disabled" in capsys.readouterr().out


def test_audit_verify_and_export(tmp_path: Path, capsys) -> None:
    assert tessera(tmp_path, "user", "add", "svc", "--role", "integration", "--no-password") == 0
    assert tessera(tmp_path, "ae", "allow", "MODALITY1", "store", "find", "--as", "svc") == 0
    assert tessera(tmp_path, "user", "disable", "svc") == 0
    capsys.readouterr()
    assert tessera(tmp_path, "audit", "verify") == 0
    assert "intact: 3 records" in capsys.readouterr().out

    out = tmp_path / "audit.log"
    assert tessera(tmp_path, "audit", "export", "--out", str(out)) == 0
    lines = out.read_text().splitlines()
    assert [line.split()[5] for line in lines] == ["user.add", "ae.allow", "user.disable"]

    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute("UPDATE audit_log SET action = 'user.enable' WHERE seq = 3")
    assert tessera(tmp_path, "audit", "verify") == 1
    assert "TAMPERED: record 3" in capsys.readouterr().out


def test_ae_allow_list(tmp_path: Path, capsys) -> None:
    assert tessera(tmp_path, "user", "add", "clinicA", "--role", "clinic", "--no-password") == 0
    assert tessera(tmp_path, "ae", "allow", "CT1", "store", "--role", "integration",
                   "--address", "10.0.4.7", "--note", "CT room") == 0  # fmt: skip
    assert (
        tessera(tmp_path, "ae", "allow", "CLINICA_US", "store", "worklist", "--as", "clinicA") == 0
    )
    capsys.readouterr()
    assert tessera(tmp_path, "ae", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["CLINICA_US", "store", "worklist", "as", "clinicA", "(clinic)"]
    assert lines[1].split() == [
        "CT1", "store", "as", "ae:CT1", "(integration)", "from", "10.0.4.7/32", "CT", "room"
    ]  # fmt: skip
    assert lines[-1] == "any other calling AE: C-ECHO only"
    assert tessera(tmp_path, "ae", "remove", "CT1") == 0
    assert tessera(tmp_path, "ae", "remove", "CT1") == 1
    with pytest.raises(SystemExit):
        tessera(tmp_path, "ae", "allow", "CT1", "delete", "--role", "admin")
    with pytest.raises(SystemExit):  # as whom: an account or a role is required
        tessera(tmp_path, "ae", "allow", "CT1", "store")
    assert tessera(tmp_path, "ae", "allow", "CT1", "store", "--role", "pathologist") == 1
    assert "may not use store" in capsys.readouterr().err


def test_the_wildcard_entry_is_shown_loudly(tmp_path: Path, capsys) -> None:
    assert tessera(tmp_path, "ae", "allow", "*", "find", "--role", "pathologist") == 0
    assert "WARNING: every calling AE" in capsys.readouterr().err
    assert tessera(tmp_path, "ae", "list") == 0
    assert capsys.readouterr().out.startswith("* (ANY AE!)")


def test_commands_are_registered_on_the_tessera_console_script(tmp_path: Path) -> None:
    import subprocess
    import sys

    def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "hub.cli", *argv, "--data", str(tmp_path)],
            input=stdin, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    added = run("user", "add", "ops", "--role", "admin", "--password-stdin",
                stdin="a long enough password\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    verified = run("audit", "verify")
    assert verified.returncode == 0 and "intact: 1 records" in verified.stdout, verified.stderr
