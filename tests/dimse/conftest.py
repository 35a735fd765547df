"""Fixtures for the DIMSE tests: the SCP on a free port over a temp archive, and a dcmtk
storescp to receive C-MOVEs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from dimse_peers import AE, HOST, DimseHub, StoreSCP, need_dcmtk, running_dimse_hub
from hubtest import free_port

import hub.worklist.model  # noqa: F401  (creates the worklist table with the archive)
from hub.config import DimseSettings, Settings


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[StoreSCP]:
    need_dcmtk()
    scp = StoreSCP(tmp_path / "received", free_port()).start()
    yield scp
    scp.stop()


@pytest.fixture
async def dimse_hub(
    tmp_path: Path, receiver: StoreSCP, store_on_s3: dict[str, str]
) -> AsyncIterator[DimseHub]:
    need_dcmtk()
    settings = Settings(
        data_dir=tmp_path / "data",
        dimse_port=0,
        ae_title=AE,
        dimse=DimseSettings(move_destinations={receiver.ae: [HOST, receiver.port]}),
        **store_on_s3,
    )
    async with running_dimse_hub(settings) as hub:
        yield hub
