"""Per-service DIMSE access from the security package's allow-list (Settings.extra dimse_acl)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dimse_peers import (
    AE,
    HOST,
    DimseHub,
    retrieve_samples,
    run,
    running_dimse_hub,
    storescu_config,
)

from hub.archive import Archive
from hub.config import Settings
from hub.security.dimse_acl import allow_ae

pytestmark = pytest.mark.peers


@pytest.fixture
async def acl_hub(tmp_path: Path) -> AsyncIterator[DimseHub]:
    settings = Settings(
        data_dir=tmp_path / "data", dimse_port=0, ae_title=AE, extra={"dimse_acl": True}
    )

    async def grant(archive: Archive) -> None:
        await allow_ae(archive.engine, "VIEWER", ["find"])
        await allow_ae(archive.engine, "MODALITY", ["store", "worklist"])

    async with running_dimse_hub(settings, grant) as hub:
        yield hub


async def test_each_service_needs_its_permission(acl_hub: DimseHub, tmp_path: Path) -> None:
    address = ["-aec", AE, HOST, str(acl_hub.port)]
    sample = retrieve_samples()[-1]
    cfg = storescu_config([sample], tmp_path / "one.cfg")

    def store(calling: str):
        return run(
            "storescu", "-v", "-aet", calling, "--config-file", cfg, "Exact", *address,
            sample.path,
        )  # fmt: skip

    refused = await store("VIEWER")
    assert "Received Store Response (Unknown Status: 0x124)" in refused.out, refused
    assert "(Success)" in (await store("MODALITY")).out

    def find(calling: str, model: str = "-S"):
        keys = ["-k", "PatientID"] + (["-k", "QueryRetrieveLevel=STUDY"] if model == "-S" else [])
        return run("findscu", "-v", model, "-aet", calling, *keys, *address)

    assert "Final Find Response (Success)" in (await find("VIEWER")).out
    denied = await find("MODALITY")
    assert "Final Find Response (Success)" not in denied.out, denied
    assert "Final Find Response (Success)" in (await find("MODALITY", "-W")).out
    assert "Final Find Response (Success)" not in (await find("STRANGER", "-W")).out
    assert (await run("echoscu", "-aet", "STRANGER", *address)).rc == 0  # echo stays open
