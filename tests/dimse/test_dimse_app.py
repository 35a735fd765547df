"""The whole hub (hub.app.build_app) with its DIMSE door: the SCP starts and stops with the
app, and what comes in by C-STORE is what DICOMweb serves; worklist items made over REST are
answered by the MWL SCP."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from dimse_peers import HOST, allow_test_aes, findscu, retrieve_samples, run, store_with_storescu
from hubtest import free_port, running_hub

from hub.config import Settings
from hub.dimse.service import DIMSE_KEY

pytestmark = pytest.mark.peers


async def audit_actions(hub) -> set[str]:
    """What the audit trail holds so far (its writer batches; wait for it to catch up)."""
    import asyncio
    import time

    from sqlalchemy import select

    from hub.security.tables import audit_log

    deadline = time.monotonic() + 60
    while True:
        async with hub.archive.engine.connect() as conn:
            actions = set((await conn.scalars(select(audit_log.c.action))).all())
        if "dimse.find" in actions or time.monotonic() > deadline:
            return actions
        await asyncio.sleep(0.1)


async def test_full_hub_runs_the_dimse_door(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", port=free_port(), dimse_port=0)
    async with running_hub(settings) as hub:
        await allow_test_aes(hub.archive)
        port = hub.app[DIMSE_KEY].server.port
        address = ["-aec", settings.ae_title, HOST, str(port)]
        assert (await run("echoscu", *address)).rc == 0

        samples = retrieve_samples()[:3]
        await store_with_storescu(address, samples, tmp_path)
        async with aiohttp.ClientSession(headers=hub.admin_headers) as http:
            async with http.get(
                hub.url + "/dicomweb/instances", headers={"Accept": "application/dicom+json"}
            ) as resp:
                assert resp.status == 200, await resp.text()
                sops = {row["00080018"]["Value"][0] for row in await resp.json()}
            assert sops == {s.sop_uid for s in samples}

            item = {"patient_name": "DOE^BABY", "patient_id": "P7", "modality": "US"}
            async with http.post(hub.url + "/api/worklist", json=item) as resp:
                assert resp.status == 201, await resp.text()
                created = await resp.json()
        answers = await findscu(
            address, "-W", ["PatientID=P7", "StudyInstanceUID"], tmp_path / "mwl"
        )
        assert [a.StudyInstanceUID for a in answers] == [created["study_uid"]]
        await findscu(address, "-S", ["QueryRetrieveLevel=STUDY", "PatientID"], tmp_path / "q")
        actions = await audit_actions(hub)
        assert {"dimse.worklist", "dimse.find", "instance.stored"} <= actions, actions
    # The app's cleanup stopped the SCP: nothing listens on its port any more.
    assert (await run("echoscu", *address)).rc != 0
