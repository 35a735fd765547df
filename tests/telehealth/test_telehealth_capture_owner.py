"""A clinic reads the captures of its own guidance session back over DICOMweb, as it reads
anything else it stored: a capture is recorded under the same identity as the clinic's uploads."""

from __future__ import annotations

import aiohttp
from telehealth_support import CineTrack, cine_frames, running_hub, start_session


async def test_a_clinic_reads_its_own_capture_over_dicomweb(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session = await start_session(http, hub)
        clinic = hub.peer(session, "clinic")
        try:
            await clinic.connect(CineTrack(cine_frames()))
            clinic.send({"type": "capture", "action": "start", "seconds": 0.5})
            stored = await clinic.next_message(
                lambda m: m["type"] == "capture" and m.get("kind") == "clip" and "state" in m
            )
        finally:
            await clinic.close()
        assert stored["state"] == "stored", stored
        study, sop = stored["study_uid"], stored["sop_instance_uid"]
        base = f"{hub.url}/dicomweb/studies/{study}"
        headers = hub.headers["clinic"]
        async with http.get(f"{base}/instances", headers=headers) as r:
            assert r.status == 200
            (row,) = await r.json(content_type=None)
        series = row["0020000E"]["Value"][0]
        assert row["00080018"]["Value"] == [sop]
        url = f"{base}/series/{series}/instances/{sop}/metadata"
        async with http.get(url, headers=headers) as r:
            assert r.status == 200, await r.text()
            (metadata,) = await r.json(content_type=None)
        assert metadata["00080060"]["Value"] == ["US"]
