"""Sessions survive reconnects and drops, keep each side to its role, and refuse bad input."""

from __future__ import annotations

import aiohttp
from telehealth_support import (
    CineTrack,
    audio_track,
    cine_frames,
    join_session,
    running_hub,
    start_session,
    stored_dataset,
)

from hub.archive import Archive
from hub.config import Settings
from hub.security.accounts import issue_token


async def _connected(hub, http):
    session = await start_session(http, hub)
    joined = await join_session(http, hub, session["invite_code"])
    clinic = hub.peer(session, "clinic")
    specialist = hub.peer(joined, "specialist")
    await clinic.connect(CineTrack(cine_frames()), audio_track())
    await specialist.connect(audio_track(), receive_video=True)
    await specialist.wait_video(10)
    return session, clinic, specialist


async def test_session_survives_the_clinic_reconnecting(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session, clinic, specialist = await _connected(hub, http)
        try:
            await clinic.close()  # the clinic's network drops
            clinic = hub.peer(session, "clinic")
            await clinic.connect(CineTrack(cine_frames()), audio_track())
            before = specialist.video_count
            # The specialist's own connection was never renegotiated, yet video flows again.
            await specialist.wait_video(before + 30)
            specialist.send({"type": "pointer", "x": 0.5, "y": 0.5})
            await clinic.next_message(lambda m: m["type"] == "pointer")
            specialist.send({"type": "capture", "action": "still"})
            event = await specialist.next_message(lambda m: m.get("kind") == "still")
            assert event["state"] == "stored"
        finally:
            await clinic.close()
            await specialist.close()


async def test_session_survives_the_specialist_reconnecting(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session, clinic, specialist = await _connected(hub, http)
        try:
            await specialist.close()
            joined = await join_session(http, hub, session["invite_code"])
            specialist = hub.peer(joined, "specialist")
            await specialist.connect(audio_track(), receive_video=True)
            await specialist.wait_video(10)
            heard = clinic.audio_frames
            specialist.send({"type": "arrow", "x0": 0.1, "y0": 0.1, "x1": 0.4, "y1": 0.3})
            arrow = await clinic.next_message(lambda m: m["type"] == "arrow")
            assert arrow["x1"] == 0.4
            await clinic.wait_audio(heard + 50)  # the new specialist's audio reaches the clinic
        finally:
            await clinic.close()
            await specialist.close()


async def test_a_dropped_clinic_still_stores_the_running_clip(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session, clinic, specialist = await _connected(hub, http)
        try:
            clinic.send({"type": "capture", "action": "start"})
            await specialist.next_message(lambda m: m.get("state") == "recording")
            await specialist.wait_video(specialist.video_count + 15)
            await clinic.pc.close()  # gone without a stop command
            event = await specialist.next_message(lambda m: m.get("kind") == "clip")
            assert event["state"] == "stored"
            assert event["ended"] == "source-ended"
            ds = await stored_dataset(hub.archive, event, stop_before_pixels=True)
            assert ds.NumberOfFrames == event["frames"] > 1
        finally:
            await clinic.close()
            await specialist.close()


async def test_ending_the_session_stores_the_running_clip(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session, clinic, specialist = await _connected(hub, http)
        headers = {**hub.headers["clinic"], "X-Telehealth-Token": session["clinic_token"]}
        url = f"{hub.url}/api/telehealth/sessions/{session['id']}"
        try:
            async with http.post(f"{url}/captures", json={"action": "start"}, headers=headers) as r:
                assert r.status == 200, await r.text()
            await specialist.wait_video(specialist.video_count + 15)
            async with http.delete(url, headers=headers) as r:
                assert r.status == 200
                ended = await r.json()
            assert [c["ended"] for c in ended["captures"]] == ["closed"]
            study = ended["captures"][0]["study_uid"]
            assert len(await hub.archive.instances(study)) == 1
            async with http.get(url, headers=headers) as r:
                assert r.status == 404
        finally:
            await clinic.close()
            await specialist.close()


async def test_each_side_may_do_only_what_its_role_allows(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session = await start_session(http, hub)
        joined = await join_session(http, hub, session["invite_code"])
        clinic = hub.peer(session, "clinic")
        specialist = hub.peer(joined, "specialist")
        try:
            await clinic.connect(CineTrack(cine_frames()), audio_track())
            # The specialist tries to send video too: the hub reads and discards it.
            await specialist.connect(
                audio_track(), CineTrack(cine_frames()[:10]), receive_video=True
            )
            await specialist.wait_video(10)
            clinic.send({"type": "pointer", "x": 0.5, "y": 0.5})
            error = await clinic.next_message(lambda m: m["type"] == "error")
            assert "clinic may not send 'pointer'" in error["message"]
            specialist.send({"type": "pointer", "x": 1.5, "y": 0.5})
            error = await specialist.next_message(lambda m: m["type"] == "error")
            assert "between 0 and 1" in error["message"]
            specialist.send({"type": "source", "width": 320, "height": 240})
            error = await specialist.next_message(lambda m: m["type"] == "error")
            assert "specialist may not send 'source'" in error["message"]
            specialist.send({"type": "capture", "action": "rewind"})
            error = await specialist.next_message(lambda m: m["type"] == "error")
            assert "still, start or stop" in error["message"]
            assert clinic.video_count == 0  # nothing but audio comes back to the clinic
        finally:
            await clinic.close()
            await specialist.close()


async def test_freeze_is_shared_and_a_frozen_still_is_the_frozen_image(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session, clinic, specialist = await _connected(hub, http)
        try:
            specialist.send({"type": "freeze"})
            await clinic.next_message(lambda m: m["type"] == "freeze")
            stills = []
            for _ in range(2):
                await specialist.wait_video(specialist.video_count + 10)
                specialist.send({"type": "capture", "action": "still"})
                stills.append(await specialist.next_message(lambda m: m.get("kind") == "still"))
            pixels = []
            for event in stills:
                pixels.append((await stored_dataset(hub.archive, event)).pixel_array)
            assert (pixels[0] == pixels[1]).all()  # the live cine moved on; the stills did not
            clinic.send({"type": "unfreeze"})
            await specialist.next_message(lambda m: m["type"] == "unfreeze")
        finally:
            await clinic.close()
            await specialist.close()


async def test_bad_requests_get_clear_errors(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        api = f"{hub.url}/api/telehealth"
        clinic, specialist = hub.headers["clinic"], hub.headers["specialist"]
        async with http.post(f"{api}/sessions", json={"patient": {}}, headers=clinic) as r:
            assert r.status == 400
            assert "patient.id or patient.name" in (await r.json())["detail"]
        bad_age = {"patient": {"id": "P1", "age": "6 months"}}
        async with http.post(f"{api}/sessions", json=bad_age, headers=clinic) as r:
            assert r.status == 400
            assert "006M" in (await r.json())["detail"]
        async with http.post(f"{api}/sessions", data=b"{not json", headers=clinic) as r:
            assert r.status == 400
        unknown_item = {"worklist_item": "987654"}
        async with http.post(f"{api}/sessions", json=unknown_item, headers=clinic) as r:
            assert r.status == 400
            assert "not found" in (await r.json())["detail"]
        # A specialist may join but not start a session (the security policy's rule).
        async with http.post(
            f"{api}/sessions", json={"patient": {"id": "P"}}, headers=specialist
        ) as r:
            assert r.status == 403
        async with http.post(f"{api}/join", json={"code": "wrong"}, headers=specialist) as r:
            assert r.status == 404
        session = await start_session(http, hub)
        url = f"{api}/sessions/{session['id']}"
        forged = {**clinic, "X-Telehealth-Token": "forged"}
        async with http.get(f"{url}/signal", headers=forged) as r:
            assert r.status == 403
        async with http.ws_connect(
            f"{url}/signal", params={"token": session["clinic_token"]}, headers=clinic
        ) as ws:
            assert (await ws.receive_json())["type"] == "state"
            await ws.send_json({"type": "offer", "sdp": "v=0 nonsense"})
            refused = await ws.receive_json()
            assert refused["type"] == "error" and "offer refused" in refused["message"]
            await ws.send_str("not json")
            assert "JSON" in (await ws.receive_json())["message"]
        headers = {**clinic, "X-Telehealth-Token": session["clinic_token"]}
        async with http.post(f"{url}/captures", json={"action": "still"}, headers=headers) as r:
            assert r.status == 409
            assert "no video" in (await r.json())["detail"]
        async with http.post(f"{url}/captures", json={"action": "stop"}, headers=headers) as r:
            assert r.status == 409
        async with http.post(f"{url}/captures", json={"action": "x"}, headers=headers) as r:
            assert r.status == 409
        joined = await join_session(http, hub, session["invite_code"])
        as_specialist = {**specialist, "X-Telehealth-Token": joined["specialist_token"]}
        async with http.delete(url, headers=as_specialist) as r:
            assert r.status == 403


async def test_shutting_the_hub_down_stores_the_running_clip(tmp_path) -> None:
    data = tmp_path / "data"
    async with running_hub(data) as hub, aiohttp.ClientSession() as http:
        session, clinic, specialist = await _connected(hub, http)
        specialist.send({"type": "capture", "action": "start"})
        await specialist.next_message(lambda m: m.get("state") == "recording")
        await specialist.wait_video(specialist.video_count + 15)
        study = session["study_uid"]
        # the hub stops with the clip still running (peers are closed after it)
    await clinic.close()
    await specialist.close()
    archive = await Archive.open(Settings(data_dir=data))
    try:
        refs = await archive.instances(study)
        assert [r.sop_class_uid for r in refs] == ["1.2.840.10008.5.1.4.1.1.3.1"]
        assert refs[0].number_of_frames > 1
    finally:
        await archive.close()


async def test_data_channel_captures_need_the_capture_permission(tmp_path) -> None:
    async with running_hub(tmp_path / "data") as hub, aiohttp.ClientSession() as http:
        session = await start_session(http, hub)
        # The clinic user signs this connection in with a token scoped to signalling only.
        _, secret = await issue_token(
            hub.archive.engine, "clinic-user", scopes=["telehealth.signal"], label="scoped"
        )
        clinic = hub.peer(session, "clinic")
        clinic.headers = {"Authorization": f"Bearer {secret}"}
        try:
            await clinic.connect(CineTrack(cine_frames()), audio_track())
            clinic.send({"type": "capture", "action": "still"})
            error = await clinic.next_message(lambda m: m["type"] == "error")
            assert "telehealth.capture permission" in error["message"]
            clinic.send({"type": "freeze"})  # guidance itself is still allowed
            await clinic.next_message(lambda m: m["type"] == "freeze")
        finally:
            await clinic.close()
