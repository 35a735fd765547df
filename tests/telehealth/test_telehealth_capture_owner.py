"""A clinic reads the captures of its own guidance session back over DICOMweb, as it reads
anything else it stored: captures are stored under the identity of the clinic that started
the session (the same identity as its uploads), whoever asks for them."""

from __future__ import annotations

import aiohttp
from telehealth_support import CineTrack, cine_frames, join_session, running_hub, start_session


def _stored(kind: str):
    return lambda m: m["type"] == "capture" and m.get("kind") == kind and "state" in m


async def test_a_clinic_reads_its_sessions_captures_over_dicomweb(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session = await start_session(http, hub)
        joined = await join_session(http, hub, session["invite_code"])
        clinic, specialist = hub.peer(session, "clinic"), hub.peer(joined, "specialist")
        try:
            await clinic.connect(CineTrack(cine_frames()))
            await specialist.connect(receive_video=True)
            await specialist.wait_video(15)
            specialist.send({"type": "capture", "action": "still"})
            still = await specialist.next_message(_stored("still"))
            clinic.send({"type": "capture", "action": "start", "seconds": 0.5})
            clip = await clinic.next_message(_stored("clip"))
        finally:
            await specialist.close()
            await clinic.close()
        assert still["state"] == clip["state"] == "stored", (still, clip)
        study = clip["study_uid"]
        base = f"{hub.url}/dicomweb/studies/{study}"
        for who in ("clinic", "specialist"):
            async with http.get(f"{base}/instances", headers=hub.headers[who]) as r:
                assert r.status == 200, (who, await r.text())
                rows = await r.json(content_type=None)
            found = {row["00080018"]["Value"][0] for row in rows}
            assert found == {still["sop_instance_uid"], clip["sop_instance_uid"]}, who
        (row,) = [r for r in rows if r["00080018"]["Value"] == [clip["sop_instance_uid"]]]
        series = row["0020000E"]["Value"][0]
        url = f"{base}/series/{series}/instances/{clip['sop_instance_uid']}/metadata"
        async with http.get(url, headers=hub.headers["clinic"]) as r:
            assert r.status == 200, await r.text()
            (metadata,) = await r.json(content_type=None)
        assert metadata["00080060"]["Value"] == ["US"]
