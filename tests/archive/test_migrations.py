"""Schema migrations: an index written before migrations existed upgrades in place, losing nothing.

The fixtures in ``fixtures/v0`` were written by ``fixtures/make_v0_index.py`` with the code of
the last release that made its schema with ``metadata.create_all``: an SQLite data folder, and
for PostgreSQL a ``pg_dump`` of an index whose tables still have the older bounded ``VARCHAR(n)``
text columns. With TESSERA_TEST_POSTGRES set (``make test-postgres``) the tests below upgrade the
PostgreSQL one; otherwise the SQLite one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pydicom
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hubtest import free_port, running_hub
from pydicom.data import get_testdata_file
from sqlalchemy import create_engine, event, func, inspect, select, table

from hub.archive import Archive
from hub.archive.index import make_engine
from hub.archive.migrations import schema
from hub.archive.migrations.runner import SchemaError, alembic_config, head, prepare, read_state
from hub.config import Settings
from hub.security.tables import ae_permissions

FIXTURES = Path(__file__).parent / "fixtures" / "v0"
OLD = "none (an index made before schema migrations)"
REFUSED = 3  # the exit status of a command refusing an index at another revision


@dataclass
class OldIndex:
    settings: Settings
    manifest: dict

    @property
    def data(self) -> Path:
        return self.settings.data_dir


@pytest.fixture
async def old_index(tmp_path: Path, new_database, monkeypatch) -> OldIndex:
    """A copy of the fixture data folder; on PostgreSQL its dump loaded into a fresh database
    (named in TESSERA_DATABASE_URL for the commands the test runs)."""
    url = await new_database()
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / ("postgres" if url else "sqlite"), data)
    if url:
        _load_dump(url, data / "index.sql")
        monkeypatch.setenv("TESSERA_DATABASE_URL", url)
    manifest = json.loads((data / "manifest.json").read_text())
    return OldIndex(Settings(data_dir=data, port=free_port(), database_url=url), manifest)


def _load_dump(url: str, dump: Path) -> None:
    psql = shutil.which("psql")
    assert psql, "psql (Debian package postgresql-client) loads the PostgreSQL fixture"
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    subprocess.run(
        [psql, "-q", "-v", "ON_ERROR_STOP=1", "-d", plain, "-f", str(dump)],
        check=True,
        capture_output=True,
    )


def tessera(*argv: str, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *argv, "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=300,
    )


# Tables the revisions since the fixture's release removed (login attempts: 0004) and added.
RETIRED = {"login_attempts"}
ADDED = {
    "login_throttle",
    "dose_identities",
    "dose_reports",
    "dose_events",
    "dose_estimates",
    "nodes",
    "leases",
    "config_entries",
    "config_scopes",
    "patient_changes",
}


async def row_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            return {
                name: (await conn.execute(select(func.count()).select_from(table(name)))).scalar()
                for name in sorted(names)
                if name != "alembic_version"
            }
    finally:
        await engine.dispose()


async def schema_differences(url: str) -> list:
    """What Alembic's autogenerate finds between the database and the tables the code declares."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(_context(sync), schema.metadata)
            )
    finally:
        await engine.dispose()


def _context(conn) -> MigrationContext:
    return MigrationContext.configure(conn, opts={"compare_type": schema.compare_type})


async def test_old_index_upgrades_in_place_and_loses_nothing(old_index: OldIndex) -> None:
    url = old_index.settings.db_url
    before = await row_counts(url)
    assert set(before) == {t.name for t in schema.TABLES} - ADDED | RETIRED
    assert all(before.values()), before  # the fixture has rows in every table
    if old_index.settings.database_url:  # the older bounded text columns are really there
        changed = {diff[0][3] for diff in await schema_differences(url)}
        assert {"study_uid", "patient_name", "sop_uid", "note"} <= changed

    current = tessera("db", "current", data=old_index.data)
    assert current.returncode == 1 and OLD in current.stdout, current
    upgrade = tessera("db", "upgrade", data=old_index.data)
    assert upgrade.returncode == 0, upgrade.stderr
    assert f"upgraded the index from {OLD} to {head()} (head)" in upgrade.stdout
    current = tessera("db", "current", data=old_index.data)
    assert (current.returncode, current.stdout.strip()) == (0, f"{head()} (head)")

    after = await row_counts(url)
    kept = {name: n for name, n in before.items() if name not in RETIRED}
    assert after == kept | dict.fromkeys(ADDED, 0)
    assert await schema_differences(url) == []
    assert await _ae_rules(url) == [("MODALITY", "ae:MODALITY", "admin", True, True, False)]
    audit = tessera("audit", "verify", data=old_index.data)
    assert audit.returncode == 0, audit.stdout + audit.stderr

    originals = {
        hashlib.sha256(Path(get_testdata_file(name)).read_bytes()).hexdigest()
        for name in old_index.manifest["files"]
    }
    assert originals == set(old_index.manifest["files"].values())
    async with running_hub(old_index.settings) as hub, hub.session() as http:
        async with http.get(f"{hub.url}/dicomweb/instances") as r:
            assert r.status == 200
            found = await r.json()
        assert len(found) == len(originals)
        served = {hashlib.sha256(await _retrieve(http, hub.url, ds)).hexdigest() for ds in found}
        assert served == originals
        async with http.get(f"{hub.url}/dicomweb/studies") as r:
            shown = {_value(row, "0020000D"): _value(row, "00100010") for row in await r.json()}
        assert shown == _patient_names(old_index.manifest["files"])  # from the patient rows
        user, password = old_index.manifest["user"], old_index.manifest["password"]
        credentials = {"username": user, "password": password}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as anonymous:
            async with anonymous.post(f"{hub.url}/api/login", json=credentials) as r:
                assert r.status == 200, await r.text()
            async with anonymous.get(f"{hub.url}/api/me") as r:
                assert (await r.json())["user"] == user


def _value(row: dict, tag: str) -> object:
    value = row.get(tag, {}).get("Value", [None])[0]
    return value.get("Alphabetic") if isinstance(value, dict) else value


def _patient_names(files: dict[str, str]) -> dict[str, str | None]:
    """Each fixture study's patient name, as its files give it."""
    names: dict[str, str | None] = {}
    for name in files:
        ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
        names[str(ds.StudyInstanceUID)] = str(ds.PatientName) or None
    return names


async def _ae_rules(url: str) -> list[tuple]:
    """The allow-list as the release before left it: each entry keeps its services, now as an
    AE-only principal with unrestricted reads, as it had."""
    t = ae_permissions.c
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            query = select(t.ae_title, t.principal, t.role, t.store, t.worklist, t.find)
            return [tuple(row) for row in await conn.execute(query)]
    finally:
        await engine.dispose()


async def _retrieve(http: aiohttp.ClientSession, base: str, ds: dict) -> bytes:
    study, series, sop = (ds[tag]["Value"][0] for tag in ("0020000D", "0020000E", "00080018"))
    url = f"{base}/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    accept = {"Accept": 'multipart/related; type="application/dicom"'}
    async with http.get(url, headers=accept) as r:
        assert r.status == 200
        reader = aiohttp.MultipartReader.from_response(r)
        part = await reader.next()
        assert part is not None
        return bytes(await part.read())


async def test_serve_no_upgrade_refuses_an_old_index(old_index: OldIndex) -> None:
    port = str(free_port())
    served = tessera("serve", "--no-upgrade", "--port", port, data=old_index.data)
    assert served.returncode == REFUSED
    assert OLD in served.stderr and f"needs revision {head()}" in served.stderr
    assert "tessera db upgrade" in served.stderr
    assert "Traceback" not in served.stderr
    assert await recorded_revision(old_index) is None


@pytest.mark.parametrize(
    "argv",
    [("verify",), ("user", "list"), ("worklist", "list"), ("forward", "list"), ("import",)],
    ids=lambda argv: "-".join(argv),
)
async def test_other_commands_refuse_an_old_index(old_index: OldIndex, argv) -> None:
    before = await row_counts(old_index.settings.db_url)
    if argv == ("import",):
        argv = ("import", get_testdata_file("JPEG2000.dcm"))
    refused = tessera(*argv, data=old_index.data)
    assert refused.returncode == REFUSED, refused
    assert OLD in refused.stderr and "tessera db upgrade" in refused.stderr
    assert await row_counts(old_index.settings.db_url) == before
    assert await recorded_revision(old_index) is None


async def test_an_index_of_a_newer_release_is_refused(settings: Settings) -> None:
    archive = await Archive.open(settings)
    try:
        async with archive.engine.begin() as conn:
            await conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    finally:
        await archive.close()
    for argv in (("db", "upgrade"), ("verify",)):
        refused = tessera(*argv, data=settings.data_dir)
        assert refused.returncode == REFUSED, refused
        assert "revision 9999, which this Tessera does not know" in refused.stderr
        assert "Traceback" not in refused.stderr
    current = tessera("db", "current", data=settings.data_dir)
    assert current.returncode == 1 and "a newer release wrote it" in current.stdout


async def test_serve_upgrades_and_readers_never_migrate(old_index: OldIndex) -> None:
    with pytest.raises(SchemaError, match="before schema migrations"):
        await Archive.open(old_index.settings, schema="require")  # what a reader process does
    archive = await Archive.open(old_index.settings, schema="upgrade")  # what serve does
    try:
        assert (await read_state(archive.engine)).up_to_date
    finally:
        await archive.close()
    archive = await Archive.open(old_index.settings, schema="require")
    await archive.close()


async def test_two_processes_upgrading_together_migrate_once(old_index: OldIndex) -> None:
    argv = [sys.executable, "-m", "hub.cli", "db", "upgrade", "--data", str(old_index.data)]
    both = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = sorted(p.communicate(timeout=300)[0] for p in both)
    assert [p.returncode for p in both] == [0, 0]
    assert "already" in outputs[0] and f"upgraded the index from {OLD}" in outputs[1], outputs
    engine = make_engine(old_index.settings.db_url)
    try:
        async with engine.connect() as conn:
            versions = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).all()
    finally:
        await engine.dispose()
    assert [v for (v,) in versions] == [head()]


async def test_an_up_to_date_index_is_only_read(settings: Settings) -> None:
    engine = make_engine(settings.db_url)
    settings.data_dir.mkdir(parents=True)
    try:
        await prepare(engine, "create")
        statements: list[str] = []
        event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_: statements.append(statement),
        )
        state = await prepare(engine, "upgrade")
    finally:
        await engine.dispose()
    assert state.up_to_date
    assert [s for s in statements if "alembic_version" in s], statements
    writes = ("CREATE", "ALTER", "INSERT", "UPDATE", "DELETE", "DROP", "BEGIN")
    assert not [s for s in statements if s.lstrip().upper().startswith(writes)], statements


async def test_a_new_index_has_exactly_the_declared_tables(settings: Settings) -> None:
    archive = await Archive.open(settings)
    await archive.close()
    assert await schema_differences(settings.db_url) == []
    assert await recorded_revision_of(settings.db_url) == head()


async def test_the_revisions_build_what_a_new_index_gets(tmp_path: Path) -> None:
    """A new index is created from the declared tables and stamped; an empty database taken
    through every revision in turn must end with the same schema."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'stepwise.sqlite'}"
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))
    finally:
        await engine.dispose()
    assert await schema_differences(url) == []
    assert await recorded_revision_of(url) == head()


def test_the_baseline_is_what_create_all_made(tmp_path: Path) -> None:
    """Revision 0001 alone, on an empty SQLite file, writes the very DDL of the fixture index,
    which ``metadata.create_all`` of the release before migrations wrote."""
    engine = create_engine(f"sqlite:///{tmp_path / 'baseline.sqlite'}")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
    finally:
        engine.dispose()
    made = shutil.copy(FIXTURES / "sqlite" / "index.sqlite", tmp_path / "create_all.sqlite")
    assert _ddl(tmp_path / "baseline.sqlite") == _ddl(made)


def _ddl(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name != 'alembic_version'"
        )
        return dict(rows.fetchall())
    finally:
        conn.close()


async def recorded_revision(index: OldIndex) -> str | None:
    return await recorded_revision_of(index.settings.db_url)


async def recorded_revision_of(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return (await read_state(engine)).current
    finally:
        await engine.dispose()
