"""Patients resolved, not assumed: one PatientID shared by four people, QA subjects apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dose_support import as_new_study, ingest, open_registry, read, rows, write

from hub.config import DoseSettings, Settings, SettingsError
from hub.dose.estimate import load_k_table
from hub.dose.profile import Profiles
from hub.dose.tables import dose_events, dose_identities, dose_reports

SHARED_ID = "4018119567876617"
SHARING = (
    "CT-RDSR-Siemens-Multi-1.dcm",
    "CT-RDSR-Siemens-Multi-2.dcm",
    "CT-RDSR-Siemens-Multi-3.dcm",
    "CT-RDSR-Toshiba_DoseCheck.dcm",
    "DX-RDSR-Canon_CXDI.dcm",
    "RF-RDSR-Eurocolumbus.dcm",
)


async def test_a_shared_patient_id_resolves_to_four_identities(
    settings: Settings, openrem: Path, tmp_path: Path
) -> None:
    archive = await open_registry(settings)
    try:
        for name in SHARING:
            assert read(openrem / name).PatientID == SHARED_ID
            await ingest(archive, openrem / name)
        found = await rows(archive, dose_identities, dose_identities.c.patient_id == SHARED_ID)
        assert len(found) == 4
        by_name = {r.name_norm: r for r in found}
        assert set(by_name) == {
            "OPENREM^MULTIRDSR",
            "KRIŽ^GILEAD",
            "MAESSEN^AYTAC",
            "OPENREM^PULSEDATA",
        }
        # the first holder of the bare ID is unflagged; the others held it with other details
        assert not by_name["OPENREM^MULTIRDSR"].review
        for name in ("KRIŽ^GILEAD", "OPENREM^PULSEDATA"):
            assert by_name[name].review
            assert "different birth date and name" in by_name[name].review_reason
        # another issuer's ID is another patient, not a conflict
        assert by_name["MAESSEN^AYTAC"].issuer == "Random"
        assert not by_name["MAESSEN^AYTAC"].review
        newborn = by_name["OPENREM^PULSEDATA"]
        (report,) = await rows(archive, dose_reports, dose_reports.c.identity_fk == newborn.id)
        assert report.age_years * 365.25 == pytest.approx(9)
        # the three cumulative reports of one study are one identity's three events
        multi = by_name["OPENREM^MULTIRDSR"]
        assert len(await rows(archive, dose_events, dose_events.c.identity_fk == multi.id)) == 3
    finally:
        await archive.close()


async def test_qa_and_phantom_subjects_are_excluded(
    settings: Settings, openrem: Path, tmp_path: Path
) -> None:
    marked = as_new_study(read(openrem / "CT-RDSR-Siemens_Flash-TAP-SS.dcm"))
    # a name and ID no pattern catches, and the attribute that says so
    marked.PatientID, marked.PatientName, marked.QualityControlSubject = "7777", "Doe^J", "YES"
    archive = await open_registry(settings)
    try:
        for name in (
            "CT-RDSR-Siemens_Flash-QA-DS.dcm",  # PatientID qaz9876543
            "CT-RDSR-ToshibaPixelMed.dcm",  # QATesting^Physics
            "CT-RDSR-Philips_BigBore4DCT.dcm",  # MONTHLY_QC^CTSIM1
            "CT-RDSR-Siemens_Flash-TAP-SS.dcm",  # SMITH^JOHN, a patient
        ):
            await ingest(archive, openrem / name)
        await ingest(archive, write(marked, tmp_path, "marked.dcm"))
        excluded = {
            r.patient_id: r.excluded_reason
            for r in await rows(archive, dose_identities, dose_identities.c.excluded.is_(True))
        }
        assert excluded == {
            "qaz9876543": "PatientID matches ^(qa|qc|phantom)",
            "physics12345": "name matches (?<![a-z])(qa|qc|phantom|physics)(?![a-z])",
            "CTSIM1_120619": "name matches (?<![a-z])(qa|qc|phantom|physics)(?![a-z])",
            "7777": "QualityControlSubject is YES",
        }
        listed = await Profiles(archive.engine, load_k_table(), DoseSettings()).patients()
        assert [p["patient_id"] for p in listed] == ["123456"]
        assert listed[0]["events"] == 4
    finally:
        await archive.close()


async def test_qa_patterns_are_configurable(settings: Settings, openrem: Path) -> None:
    settings.dose = DoseSettings(qa_id_patterns=("^phy",), qa_name_patterns=())
    archive = await open_registry(settings)
    try:
        await ingest(archive, openrem / "CT-RDSR-Siemens-Continued-1.dcm")  # phy12345
        await ingest(archive, openrem / "CT-RDSR-ToshibaPixelMed.dcm")  # physics12345
        (first, second) = await rows(archive, dose_identities)
        assert (first.excluded, first.excluded_reason) == (True, "PatientID matches ^phy")
        assert second.excluded  # its ID starts with phy too; its name no longer counts
    finally:
        await archive.close()
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.from_env({"TESSERA_EXTRA": json.dumps({"dose": {"qa_pattern": ["x"]}})})
    with pytest.raises(SettingsError, match="qa_id_patterns"):
        Settings.from_env({"TESSERA_EXTRA": json.dumps({"dose": {"qa_id_patterns": ["("]}})})
