"""Per-service DIMSE access from the security package's allow-list, with dcmtk peers.

The port denies by default (C-ECHO only). An allowed AE may use the services on its entry
that its role permits, from its bound address; '*' stands for every AE not named.
"""

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
from hub.security.accounts import create_user, set_disabled
from hub.security.dimse_acl import allow_ae

pytestmark = pytest.mark.peers


@pytest.fixture
async def acl_hub(tmp_path: Path) -> AsyncIterator[DimseHub]:
    settings = Settings(data_dir=tmp_path / "data", dimse_port=0, ae_title=AE)

    async def grant(archive: Archive) -> None:
        await allow_ae(archive.engine, "VIEWER", ["find"], role="pathologist")
        await allow_ae(archive.engine, "MODALITY", ["store", "worklist"], role="clinic")
        await allow_ae(archive.engine, "FARAWAY", ["find"], role="admin", address="10.9.9.0/24")
        await allow_ae(archive.engine, "NEARBY", ["find"], role="admin", address="127.0.0.0/8")
        await create_user(archive.engine, "clinicA", "clinic", None)
        await allow_ae(archive.engine, "CLINICA_US", ["find"], user="clinicA")

    async with running_dimse_hub(settings, grant, allow=()) as hub:
        yield hub


def _address(hub: DimseHub) -> list[str]:
    return ["-aec", AE, HOST, str(hub.port)]


def _find(hub: DimseHub, calling: str, model: str = "-S"):
    keys = ["-k", "PatientID"] + (["-k", "QueryRetrieveLevel=STUDY"] if model == "-S" else [])
    return run("findscu", "-v", model, "-aet", calling, *keys, *_address(hub))


async def test_each_service_needs_its_permission(acl_hub: DimseHub, tmp_path: Path) -> None:
    sample = retrieve_samples()[-1]
    cfg = storescu_config([sample], tmp_path / "one.cfg")

    def store(calling: str):
        return run(
            "storescu", "-v", "-aet", calling, "--config-file", cfg, "Exact", *_address(acl_hub),
            sample.path,
        )  # fmt: skip

    refused = await store("VIEWER")
    assert "Received Store Response (Unknown Status: 0x124)" in refused.out, refused
    assert "(Success)" in (await store("MODALITY")).out

    assert "Final Find Response (Success)" in (await _find(acl_hub, "VIEWER")).out
    denied = await _find(acl_hub, "MODALITY")  # a worklist AE, not a query one
    assert "Final Find Response (Success)" not in denied.out, denied
    assert "Final Find Response (Success)" in (await _find(acl_hub, "MODALITY", "-W")).out
    stranger = await _find(acl_hub, "STRANGER", "-W")
    assert "Final Find Response (Success)" not in stranger.out, stranger
    assert "Unknown Status: 0x124" in stranger.out, stranger  # Refused: Not Authorized
    assert (await run("echoscu", "-aet", "STRANGER", *_address(acl_hub))).rc == 0


async def test_an_ae_bound_to_an_address_is_refused_from_elsewhere(acl_hub: DimseHub) -> None:
    far = await _find(acl_hub, "FARAWAY")
    assert "Final Find Response (Success)" not in far.out, far
    assert "Final Find Response (Success)" in (await _find(acl_hub, "NEARBY")).out


async def test_an_ae_of_a_disabled_account_is_refused(acl_hub: DimseHub) -> None:
    assert "Final Find Response (Success)" in (await _find(acl_hub, "CLINICA_US")).out
    await set_disabled(acl_hub.archive.engine, "clinicA")
    refused = await _find(acl_hub, "CLINICA_US")
    assert "Final Find Response (Success)" not in refused.out, refused


async def test_the_wildcard_entry_admits_every_other_ae(acl_hub: DimseHub) -> None:
    assert "Final Find Response (Success)" not in (await _find(acl_hub, "ANYONE")).out
    await allow_ae(acl_hub.archive.engine, "*", ["find"], role="pathologist")
    assert "Final Find Response (Success)" in (await _find(acl_hub, "ANYONE")).out
    # A name on the list keeps its own entry: the wildcard does not add to it.
    assert "Final Find Response (Success)" not in (await _find(acl_hub, "MODALITY")).out
