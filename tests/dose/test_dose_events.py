"""One event counted once: cumulative and continued reports, re-sending, malformed reports."""

from __future__ import annotations

from datetime import date
from itertools import permutations
from pathlib import Path

import pytest
from dose_support import as_new_study, ingest, items, open_registry, read, rows, snapshot, write

from hub.archive import Source
from hub.config import DoseSettings, Settings
from hub.dose.estimate import load_k_table
from hub.dose.profile import Profiles
from hub.dose.tables import dose_events, dose_reports

MULTI = (
    "CT-RDSR-Siemens-Multi-1.dcm",
    "CT-RDSR-Siemens-Multi-2.dcm",
    "CT-RDSR-Siemens-Multi-3.dcm",
)
CONTINUED = ("CT-RDSR-Siemens-Continued-1.dcm", "CT-RDSR-Siemens-Continued-2.dcm")


def profiles(archive) -> Profiles:
    return Profiles(archive.engine, load_k_table(), DoseSettings())


@pytest.mark.parametrize("order", list(permutations(MULTI)), ids="-".join)
async def test_cumulative_reports_in_any_order_count_each_event_once(
    settings: Settings, openrem: Path, tmp_path: Path, order: tuple[str, ...]
) -> None:
    archive = await open_registry(settings)
    try:
        for name in order:
            await ingest(archive, openrem / name)
        study_uid = read(openrem / MULTI[0]).StudyInstanceUID
        reports = await rows(archive, dose_reports)
        # the trap: each report states its own running total
        assert sum(r.accumulated_dlp for r in reports) == pytest.approx(320.82)
        study = await profiles(archive).study(study_uid)
        assert study["events"] == 3
        assert study["dlp_mgycm"] == pytest.approx(236.09)
        assert {r.study_uid for r in await rows(archive, dose_events)} == {study_uid}
    finally:
        await archive.close()


async def test_a_study_continued_in_a_second_report_is_one_study(
    settings: Settings, openrem: Path, tmp_path: Path
) -> None:
    archive = await open_registry(settings)
    try:
        for name in CONTINUED:
            await ingest(archive, openrem / name)
        study_uid = read(openrem / CONTINUED[0]).StudyInstanceUID
        assert read(openrem / CONTINUED[1]).StudyInstanceUID == study_uid
        study = await profiles(archive).study(study_uid)
        assert study["events"] == 4
        assert study["dlp_mgycm"] == pytest.approx(60.17 + 56.44)
        assert study["dlp_mgycm"] == pytest.approx(116.61)
        assert len({r.identity_fk for r in await rows(archive, dose_events)}) == 1
    finally:
        await archive.close()


async def test_resending_changes_nothing(settings: Settings, openrem: Path, tmp_path: Path) -> None:
    archive = await open_registry(settings)
    try:
        for name in MULTI + CONTINUED:
            await ingest(archive, openrem / name)
        before = await snapshot(archive)
        assert len(before["dose_events"]) == 7 and len(before["dose_estimates"]) > 0
        for name in MULTI + CONTINUED:  # the same bytes again: a duplicate
            result = await archive.ingest_file(openrem / name, source=Source(door="import"))
            assert result.status == "duplicate"
        # the last report re-sent by a scanner as a new instance: its events are known
        again = read(openrem / MULTI[2])
        again.SOPInstanceUID = again.file_meta.MediaStorageSOPInstanceUID = (
            "1.2.826.0.1.3680043.10.1"
        )
        await ingest(archive, write(again, tmp_path, "resent.dcm"))
        after = await snapshot(archive)
        assert after["dose_events"] == before["dose_events"]
        assert after["dose_estimates"] == before["dose_estimates"]
        assert after["dose_identities"] == before["dose_identities"]
        assert len(after["dose_reports"]) == len(before["dose_reports"]) + 1
    finally:
        await archive.close()


async def test_a_malformed_report_is_stored_as_sent_with_a_warning_and_no_events(
    settings: Settings, openrem: Path, tmp_path: Path
) -> None:
    ds = as_new_study(read(openrem / MULTI[2]))
    for event in items(ds, "DCM", "113819"):
        event.ContentSequence = [
            i for i in event.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue != "113769"
        ]
        break
    path = write(ds, tmp_path, "no-event-uid.dcm")
    empty = as_new_study(read(openrem / MULTI[0]))
    del empty.ContentSequence
    empty_path = write(empty, tmp_path, "no-content.dcm")
    archive = await open_registry(settings)
    try:
        for p, expected in (
            (path, "CT Acquisition 1 has no Irradiation Event UID (113769)"),
            (empty_path, "the report has no content items"),
        ):
            result = await archive.ingest_file(p, source=Source(door="import"))
            assert result.status == "stored"
            stored = b"".join([block async for block in archive.store.stream(result.sha256)])
            assert stored == p.read_bytes()
            sop_uid = read(p).SOPInstanceUID
            (report,) = await rows(archive, dose_reports, dose_reports.c.sop_uid == sop_uid)
            assert report.warning == expected
            assert report.num_events == 0
        assert await rows(archive, dose_events) == []
    finally:
        await archive.close()


async def test_the_alert_level_of_the_age_band_is_a_setting(
    settings: Settings, openrem: Path
) -> None:
    settings.dose = DoseSettings(alert_msv={"adult": 1})
    archive = await open_registry(settings)
    try:
        await ingest(archive, openrem / MULTI[2])
        (identity,) = {r.identity_fk for r in await rows(archive, dose_events)}
        low = Profiles(archive.engine, load_k_table(), settings.dose)
        default = profiles(archive)
        at = date(2018, 2, 1)
        alert = (await low.profile(identity, at))["alert"]
        assert alert == {"age_column": "adult", "threshold_msv": 1.0, "exceeded": True}
        assert not (await default.profile(identity, at))["alert"]["exceeded"]  # 50 mSv
        assert not (await low.profile(identity, date(2019, 6, 1)))["alert"]["exceeded"]
    finally:
        await archive.close()


TOSHIBA_SD = "CT-RDSR-Toshiba_MultiValSD.dcm"  # a Decimal String "10.50/ 15.00" in a private item
NOT_A_DS = "'10.50/ 15.00' is not a valid DS: left out of the metadata"


async def test_a_report_with_a_value_that_is_not_a_decimal_string_is_stored_as_sent(
    settings: Settings, openrem: Path
) -> None:
    path = openrem / TOSHIBA_SD
    archive = await open_registry(settings)
    try:
        result = await archive.ingest_file(path, source=Source(door="import"))
        assert result.status == "stored", result.message
        assert [w for w in result.warnings if NOT_A_DS in w] == [
            f"Numeric Value (0040,A30A) {NOT_A_DS}"
        ]
        stored = b"".join([block async for block in archive.store.stream(result.sha256)])
        assert stored == path.read_bytes()
        (ref,) = await archive.instances(result.study_uid, sop_uid=result.sop_instance_uid)
        assert '"0040A30A":{"vr":"DS"}' in await archive.metadata_json(ref)  # its value left out
        # the value is in the scanner's own container, not one the registry reads
        (report,) = await rows(archive, dose_reports)
        assert report.warning == ""
        events = await rows(archive, dose_events)
        assert len(events) == report.num_events == 3
        assert [e.dlp for e in events if e.dlp is not None] == [pytest.approx(136.9)]
    finally:
        await archive.close()


async def test_a_dose_value_that_is_not_a_decimal_string_is_a_dose_warning(
    settings: Settings, openrem: Path, tmp_path: Path
) -> None:
    ds = as_new_study(read(openrem / TOSHIBA_SD))
    (sd,) = items(ds, "DCM", "121414")
    dlp = next(i for i in items(ds, "DCM", "113838") if "MeasuredValueSequence" in i)
    dlp.MeasuredValueSequence[0]["NumericValue"] = sd.MeasuredValueSequence[0]["NumericValue"]
    path = write(ds, tmp_path, "bad-dlp.dcm")
    archive = await open_registry(settings)
    try:
        result = await archive.ingest_file(path, source=Source(door="import"))
        assert result.status == "stored", result.message
        stored = b"".join([block async for block in archive.store.stream(result.sha256)])
        assert stored == path.read_bytes()
        (report,) = await rows(archive, dose_reports)
        assert report.warning == "CT Acquisition 3 DLP: '10.50/ 15.00' is not a number"
        assert report.num_events == 0
        assert await rows(archive, dose_events) == []
    finally:
        await archive.close()
