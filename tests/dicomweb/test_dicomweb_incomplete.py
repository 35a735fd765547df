"""An object without its Type 1 Modality is stored with a warning the sender and an
administrator can see, and the study list still answers for it and for the others."""

from __future__ import annotations

import asyncio
import time

import pydicom
from dicomweb_support import STOW_TYPE, multipart_body
from pydicom.data import get_testdata_file

NO_MODALITY = get_testdata_file("SC_rgb_jpeg_app14_dcmd.dcm")  # pydicom's; it lacks Modality
COMPLETE = get_testdata_file("CT_small.dcm")
WARNING_REASON, REFERENCED_SOP_SEQUENCE = "00081196", "00081199"


async def _store(hub, path: str) -> tuple[int, dict, dict]:
    with open(path, "rb") as f:
        body = multipart_body([("application/dicom", f.read())])
    async with (
        hub.session() as session,
        session.post(
            hub.url + "/dicomweb/studies", data=body, headers={"Content-Type": STOW_TYPE}
        ) as r,
    ):
        return r.status, await r.json(content_type=None), dict(r.headers)


async def _audit_lines(hub, needle: str) -> list[str]:
    """The audit export's lines naming `needle`, once the audit writer has written them."""
    deadline = time.monotonic() + 30
    async with hub.session() as session:
        while True:
            async with session.get(hub.url + "/api/admin/audit/export") as r:
                lines = [line for line in (await r.text()).splitlines() if needle in line]
            if lines or time.monotonic() > deadline:
                return lines
            await asyncio.sleep(0.2)


async def test_missing_modality_is_stored_with_a_warning(hub_server) -> None:
    assert "Modality" not in pydicom.dcmread(NO_MODALITY, stop_before_pixels=True)
    status, body, headers = await _store(hub_server, NO_MODALITY)
    assert status == 202  # stored, with a warning (PS3.18 10.5.3)
    (item,) = body[REFERENCED_SOP_SEQUENCE]["Value"]
    assert item[WARNING_REASON]["Value"] == [0xB007]
    assert "Modality" in item["00000902"]["Value"][0]
    assert "Modality" in headers["Warning"]
    status, _, headers = await _store(hub_server, COMPLETE)
    assert status == 200 and "Warning" not in headers

    sop_uid = str(pydicom.dcmread(NO_MODALITY, stop_before_pixels=True).SOPInstanceUID)
    (line,) = await _audit_lines(hub_server, sop_uid)
    assert "Modality (Type 1, General Series Module) is missing" in line

    async with (
        hub_server.session() as session,
        session.get(hub_server.url + "/dicomweb/studies") as r,
    ):
        studies = await r.json()
    assert len(studies) == 2
    by_modalities = sorted((s["00080061"] for s in studies), key=len)
    # PS3.18 Table 10.6.3-3 makes Modalities in Study a required key: it stays, empty
    # (DICOM JSON F.2.5: no "Value"), rather than being left out.
    assert by_modalities == [{"vr": "CS"}, {"vr": "CS", "Value": ["CT"]}]
