"""Patient changes on the administration page in headless Chromium: the updates and merges the
patient administration made are listed, a revert that must wait for a later change shows why,
and reverts in order put the study back as its objects name it (checked through QIDO-RS)."""

from __future__ import annotations

import asyncio

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from hubtest import HubServer
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from web_support import signed_in_page

from hub.patients.changes import Origin, merge_patients, update_patient
from hub.patients.model import Demographics, PatientKey

pytestmark = pytest.mark.browser


def _client(hub: HubServer) -> DICOMwebClient:
    return DICOMwebClient(url=f"{hub.url}/dicomweb", headers=hub.admin_headers)


def _names(hub: HubServer, patient_id: str) -> list[str]:
    found = _client(hub).search_for_studies(search_filters={"PatientID": patient_id})
    return [str(pydicom.Dataset.from_json(s).PatientName) for s in found]


async def test_changes_are_listed_and_reverted_latest_first(hub_server: HubServer) -> None:
    hub = hub_server
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName = "P7", "DOE^BABY"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    await asyncio.to_thread(_client(hub).store_instances, [ds])
    origin = Origin("hl7:HIS^HOSP", "127.0.0.1:1", "ADT1")
    async with hub.archive.engine.begin() as conn:
        update = await update_patient(
            conn, PatientKey("P7"), Demographics(name="ROE^BABY", sex="F"), origin
        )
        merge = await merge_patients(
            conn, PatientKey("P7"), PatientKey("P6"), Demographics(), origin
        )
    assert not isinstance(update, str) and not isinstance(merge, str)
    assert await asyncio.to_thread(_names, hub, "P7") == ["ROE^BABY"]

    async with signed_in_page(hub, "/admin#patients") as (page, console):
        update_row = f"#patient-changes tr[data-change='{update.id}']"
        merge_row = f"#patient-changes tr[data-change='{merge.id}']"
        await page.wait_for_selector(merge_row)
        assert "P6 into P7" in await page.inner_text(merge_row)
        assert "name ROE^BABY, sex F" in await page.inner_text(update_row)

        await page.click(f"{update_row} button:text('Revert')")
        await page.wait_for_selector("#error:not([hidden])")
        assert f"change {merge.id} was made after it" in await page.inner_text("#error")
        assert await asyncio.to_thread(_names, hub, "P7") == ["ROE^BABY"]

        await page.click(f"{merge_row} button:text('Revert')")
        await page.wait_for_selector(f"{merge_row} td.state:text('by test-admin')")
        await page.click(f"{update_row} button:text('Revert')")
        await page.wait_for_selector(f"{update_row} td.state:text('by test-admin')")
        assert await asyncio.to_thread(_names, hub, "P7") == ["DOE^BABY"]

        await page.fill("#patient-search [name=patient]", "P6")
        await page.click("#patient-search button[type=submit]")
        await page.wait_for_selector(update_row, state="detached")
        assert await page.locator("#patient-changes tbody tr").count() == 1
        assert [e for e in console.errors if "409" not in e] == []
