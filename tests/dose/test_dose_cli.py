"""The registry from the command line, as an operator uses it: `tessera import` records the dose
of the reports it imports."""

from __future__ import annotations

from pathlib import Path

from dose_support import rows
from hubtest import tessera

from hub.archive import Archive
from hub.config import Settings
from hub.dose.estimate import load_k_table
from hub.dose.tables import dose_estimates, dose_events, dose_reports

MULTI = "CT-RDSR-Siemens-Multi-3.dcm"  # three events, coded Chest


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
