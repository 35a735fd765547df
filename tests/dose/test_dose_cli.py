"""The registry from the command line, as an operator uses it: `tessera import` records the dose
of the reports it imports, `tessera dose recompute` estimates every event with a new table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dose_support import rows
from hubtest import tessera
from sqlalchemy import select

from hub.archive import Archive
from hub.config import Settings
from hub.dose.estimate import DATA, load_k_table
from hub.dose.tables import dose_estimates, dose_events, dose_reports
from hub.security.tables import audit_log

MULTI = "CT-RDSR-Siemens-Multi-3.dcm"  # three events, coded Chest
TAP = "CT-RDSR-Siemens_Flash-TAP-SS.dcm"


async def test_an_imported_report_is_recorded(settings: Settings, openrem: Path) -> None:
    printed = tessera(settings.data_dir, "import", str(openrem / MULTI))
    assert "1 stored" in printed
    archive = await Archive.open(settings)
    try:
        (report,) = await rows(archive, dose_reports)
        assert report.warning == "" and report.num_events == 3
        events = await rows(archive, dose_events)
        assert len(events) == 3
        estimates = await rows(archive, dose_estimates)
        assert {e.event_fk for e in estimates} == {e.id for e in events}
        assert {e.table_id for e in estimates} == {load_k_table().id}
    finally:
        await archive.close()


def revised_table(folder: Path) -> Path:
    """The shipped table as its next version, with the adult abdomen and pelvis k doubled."""
    data = json.loads((DATA / "k_factors.json").read_text())
    data["id"] = data["id"].removesuffix("-v1") + "-v2"
    data["rows"]["abdomen_pelvis"]["adult"] *= 2
    path = folder / "k_factors-v2.json"
    path.write_text(json.dumps(data))
    return path


async def test_recompute_estimates_every_event_with_the_current_table_once(
    settings: Settings, openrem: Path, tmp_path: Path, monkeypatch
) -> None:
    tessera(settings.data_dir, "import", str(openrem / TAP))
    old, new = load_k_table(), load_k_table(revised_table(tmp_path))
    assert new.id != old.id
    printed = tessera(settings.data_dir, "dose", "recompute")  # the table estimated with
    assert printed.startswith(f"0 event(s) estimated with table {old.id} ")
    archive = await Archive.open(settings)
    try:
        before = await rows(archive, dose_estimates)
        estimated = {e.event_fk for e in before}
        monkeypatch.setenv(
            "TESSERA_EXTRA", json.dumps({"dose": {"k_table": str(tmp_path / "k_factors-v2.json")}})
        )
        printed = tessera(settings.data_dir, "dose", "recompute")
        assert printed.strip() == (
            f"{len(estimated)} event(s) estimated with table {new.id} ({len(before)} "
            "estimate(s) added); 0 already estimated with it, unchanged"
        )
        after = await rows(archive, dose_estimates)
        assert [e for e in after if e.table_id == old.id] == before  # the old ones stay
        added = [e for e in after if e.table_id == new.id]
        assert {e.event_fk for e in added} == estimated
        for e in added:
            assert e.k == new.k(e.region_row, e.age_column)
            assert e.e_msv == pytest.approx(e.k * e.dlp)
        doubled = [e for e in added if (e.region_row, e.age_column) == ("abdomen_pelvis", "adult")]
        assert doubled and all(e.k == 2 * old.k("abdomen_pelvis", "adult") for e in doubled)

        printed = tessera(settings.data_dir, "dose", "recompute")
        assert printed.strip() == (
            f"0 event(s) estimated with table {new.id} (0 estimate(s) added); "
            f"{len(estimated)} already estimated with it, unchanged"
        )
        assert await rows(archive, dose_estimates) == after
        async with archive.engine.connect() as conn:
            audited = (
                await conn.execute(
                    select(audit_log.c.action, audit_log.c.source, audit_log.c.detail)
                    .where(audit_log.c.action == "dose.recompute")
                    .order_by(audit_log.c.seq)
                )
            ).all()
        assert [(a.source, json.loads(a.detail)) for a in audited] == [
            ("cli", {"table_id": old.id, "events": 0, "estimates": 0}),
            ("cli", {"table_id": new.id, "events": len(estimated), "estimates": len(before)}),
            ("cli", {"table_id": new.id, "events": 0, "estimates": 0}),
        ]
    finally:
        await archive.close()
    assert "intact" in tessera(settings.data_dir, "audit", "verify").lower()


async def test_an_unreadable_table_is_an_error_naming_it(
    settings: Settings, tmp_path: Path, monkeypatch
) -> None:
    import subprocess
    import sys

    missing = tmp_path / "no-such-table.json"
    monkeypatch.setenv("TESSERA_EXTRA", json.dumps({"dose": {"k_table": str(missing)}}))
    command = [
        sys.executable,
        "-m",
        "hub.cli",
        "dose",
        "recompute",
        "--data",
        str(settings.data_dir),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"error: dose k_table: {missing}: cannot be read" in run.stderr
