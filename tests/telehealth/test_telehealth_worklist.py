"""A session started from a real worklist item carries its attributes (PS3.17 Annex J)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from fractions import Fraction

import aiohttp
from av import VideoFrame
from hubtest import dciodvfy_errors
from pydicom.uid import generate_uid
from telehealth_support import cine_frames, running_hub

from hub.worklist.model import NewItem, create
from telehealth.us_image import CaptureContext, build_instance, encode_frame
from telehealth.worklist import attributes_for_item


async def test_session_from_a_worklist_item(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        new = NewItem.from_json(
            {
                "patient_name": "Nowak^Ola",
                "patient_id": "PAED-7",
                "modality": "US",
                "birth_date": "20260415",
                "sex": "F",
                "weight_kg": 6.2,
                "size_m": 0.61,
                "accession": "ACC-WL-9",
                "requested_procedure_id": "RP-9",
                "sps_id": "SPS-9",
                "protocol_codes": [{"value": "US-HIP", "scheme": "99TESSERA", "meaning": "Hip"}],
                "clinic": "clinic-user",  # the clinic that starts the session sees the item
            }
        )
        item = await create(hub.archive.engine, new)

        url = f"{hub.url}/api/telehealth/sessions"
        body = {"worklist_item": str(item.id)}
        async with http.post(url, json=body, headers=hub.headers["clinic"]) as r:
            assert r.status == 201, await r.text()
            session = await r.json()
        assert session["patient"]["id"] == "PAED-7"
        assert session["accession"] == "ACC-WL-9"
        assert session["study_uid"] == item.study_uid

        ds = await attributes_for_item(hub.archive.engine, str(item.id))
        assert ds.StudyInstanceUID == item.study_uid
        assert ds.StudyID == "RP-9"
        assert float(ds.PatientWeight) == 6.2
        request = ds.RequestAttributesSequence[0]
        assert (request.RequestedProcedureID, request.ScheduledProcedureStepID) == ("RP-9", "SPS-9")
        assert request.ScheduledProtocolCodeSequence[0].CodeValue == "US-HIP"
        assert "ReferencedStudySequence" in ds

        # An image built with these attributes is a valid US image.
        frame = VideoFrame.from_ndarray(cine_frames()[0], format="rgb24")
        frame.pts, frame.time_base = 0, Fraction(1, 90000)
        now = datetime.now()
        context = CaptureContext(ds, generate_uid(), 900, 1, now, now)
        path = tmp_path / "still.dcm"
        path.write_bytes(build_instance([encode_frame(frame, "jpeg", 90)], context))
        assert await asyncio.to_thread(dciodvfy_errors, path) in ([], None)
