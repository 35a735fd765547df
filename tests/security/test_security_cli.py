"""`tessera user|audit|ae` commands, run through an argparse parser the way hub.cli builds it."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sqlite3
from pathlib import Path

import pytest

from hub.archive.index import make_engine
from hub.config import Settings
from hub.security.accounts import check_password
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


def _signs_in_temporarily(data: Path, user: str, password: str) -> bool | None:
    """Whether the password is a one-time one (None: it does not sign the user in)."""

    async def check() -> bool | None:
        engine = make_engine(Settings(data_dir=data).db_url)
        try:
            who = await check_password(engine, user, password)
        finally:
            await engine.dispose()
        return None if who is None else who.password_temporary

    return asyncio.run(check())


def test_user_role_enable_and_a_generated_password(tmp_path: Path, capsys, monkeypatch) -> None:
    assert tessera(tmp_path, "user", "add", "boss", "--role", "admin", "--no-password") == 0
    assert tessera(tmp_path, "user", "add", "ann", "--role", "clinic", "--no-password") == 0
    capsys.readouterr()
    assert tessera(tmp_path, "user", "role", "ann", "pathologist") == 0
    assert capsys.readouterr().out == "ann: clinic -> pathologist\n"
    assert tessera(tmp_path, "user", "role", "boss", "clinic") == 1
    assert "last active administrator" in capsys.readouterr().err
    assert tessera(tmp_path, "user", "disable", "boss") == 1
    assert "last active administrator" in capsys.readouterr().err
    assert tessera(tmp_path, "user", "disable", "ann") == 0
    assert tessera(tmp_path, "user", "enable", "ann") == 0
    capsys.readouterr()
    assert tessera(tmp_path, "user", "list") == 0
    listed = {line.split()[0]: line.split()[1:3] for line in capsys.readouterr().out.splitlines()}
    assert listed == {"ann": ["pathologist", "active"], "boss": ["admin", "active"]}

    assert tessera(tmp_path, "user", "password", "ann", "--generate") == 0
    said = capsys.readouterr()
    password = said.out.strip()
    assert len(password) >= 12 and "shown once" in said.err
    assert _signs_in_temporarily(tmp_path, "ann", password) is True
    chosen = "an operator's chosen password"
    given = {"stdin": chosen + "\n", "monkeypatch": monkeypatch}
    assert tessera(tmp_path, "user", "password", "ann", "--password-stdin", **given) == 0
    assert _signs_in_temporarily(tmp_path, "ann", chosen) is False
    assert tessera(tmp_path, "user", "password", "ann", "--generate") == 0
    password = capsys.readouterr().out.strip()
    assert tessera(tmp_path, "audit", "search", "--json") == 0
    trail = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert password not in json.dumps(trail)
    assert [r["action"] for r in trail] == [
        "user.password", "user.password", "user.password", "user.enable", "user.disable",
        "user.role", "user.add", "user.add"
    ]  # fmt: skip
    assert trail[5]["detail"] == {
        "user": "ann",
        "field": "role",
        "old": "clinic",
        "new": "pathologist",
    }
    assert trail[2]["detail"] == {
        "user": "ann", "field": "password", "old": "none", "new": "set", "generated": True
    }  # fmt: skip
    assert trail[0]["detail"]["old"] == "set" and trail[1]["detail"].get("generated") is None


def test_audit_search(tmp_path: Path, capsys) -> None:
    for name in ("svc1", "svc2"):
        assert tessera(tmp_path, "user", "add", name, "--role", "integration", "--no-password") == 0
    assert tessera(tmp_path, "ae", "allow", "MODALITY1", "store", "--as", "svc1") == 0
    assert tessera(tmp_path, "ae", "remove", "MODALITY1") == 0
    for _ in range(3):
        assert tessera(tmp_path, "user", "token", "svc2") == 0
    capsys.readouterr()

    assert tessera(tmp_path, "audit", "search", "--action", "ae.") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["4", "3"]
    assert [line.split()[4] for line in lines] == ["ae.remove", "ae.allow"]
    assert lines[1].split()[5:9] == ["success", "-", "-", "cli"]
    allowed = json.loads(lines[1].split(" cli ", 1)[1])
    assert (allowed["ae"], allowed["old"]) == ("MODALITY1", None)
    assert (allowed["new"]["principal"], allowed["new"]["services"]) == ("svc1", ["store"])
    removed = json.loads(lines[0].split(" cli ", 1)[1])
    assert (removed["old"]["version"], removed["new"]) == (1, None)

    assert tessera(tmp_path, "audit", "search", "--action", "token.issue", "--limit", "2") == 0
    said = capsys.readouterr()
    assert [line.split()[0] for line in said.out.splitlines()] == ["7", "6"]
    assert "--before 6" in said.err
    assert tessera(tmp_path, "audit", "search", "--action", "token.issue", "--before", "6") == 0
    said = capsys.readouterr()
    assert [line.split()[0] for line in said.out.splitlines()] == ["5"] and said.err == ""

    assert tessera(tmp_path, "audit", "search", "--json", "--action", "user.add") == 0
    added = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["detail"]["user"] for r in added] == ["svc2", "svc1"]
    assert all("mac" not in r and r["source"] == "cli" for r in added)
    first = added[1]["time"]
    assert tessera(tmp_path, "audit", "search", "--until", first) == 0
    assert capsys.readouterr().out == ""
    assert tessera(tmp_path, "audit", "search", "--since", first, "--action", "user.add") == 0
    assert len(capsys.readouterr().out.splitlines()) == 2

    assert tessera(tmp_path, "audit", "search", "--limit", "9999") == 1
    assert "--limit: must be an integer from 1 to 500" in capsys.readouterr().err
    assert tessera(tmp_path, "audit", "search", "--since", "last week") == 1
    assert "--since: must be an ISO 8601 time" in capsys.readouterr().err


def test_audit_search_keeps_each_record_on_one_line(tmp_path: Path, capsys) -> None:
    """A failed sign-in records the user name as typed: it may hold spaces and line breaks."""
    import asyncio

    from hub.archive.index import create_schema, make_engine
    from hub.security import audit_trail

    async def failed_login() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'index.sqlite'}")
        try:
            await create_schema(engine)
            audit_trail.attach(engine, tmp_path)
            await audit_trail.audit(engine, who="eve\n2 fake line", role="-", action="login",
                                    outcome="failure", source="10.0.0.9")  # fmt: skip
        finally:
            audit_trail.detach(engine)
            await engine.dispose()

    asyncio.run(failed_login())
    assert tessera(tmp_path, "audit", "search") == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split(" ", 2)[2] == '"eve\\n2 fake line" - login failure - - 10.0.0.9'
