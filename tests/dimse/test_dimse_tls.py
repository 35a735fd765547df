"""DICOM over TLS on the DIMSE port (Settings.extra dimse_tls) with dcmtk peers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dimse_peers import AE, HOST, DimseHub, need_dcmtk, retrieve_samples, run, running_dimse_hub

from hub.archive.query import Query
from hub.config import Settings
from hub.security.tls import make_self_signed

pytestmark = pytest.mark.peers


@pytest.fixture
async def tls_hub(tmp_path: Path) -> AsyncIterator[DimseHub]:
    need_dcmtk()
    cert, key = make_self_signed(tmp_path / "tls")
    settings = Settings(
        data_dir=tmp_path / "data",
        dimse_port=0,
        ae_title=AE,
        extra={"dimse_tls": {"cert": str(cert), "key": str(key)}},
    )
    async with running_dimse_hub(settings) as hub:
        yield hub


async def test_echo_and_store_over_tls(tls_hub: DimseHub) -> None:
    address = ["-aec", AE, HOST, str(tls_hub.port)]
    tls = ["+tla", "-ic"]  # encrypted, the demo certificate is self-signed
    assert (await run("echoscu", *tls, *address)).rc == 0
    plain = await run("echoscu", *address)
    assert plain.rc != 0, plain  # no clear-text DICOM on a TLS port

    sample = next(s for s in retrieve_samples() if s.path.name == "CT_small.dcm")
    stored = await run("storescu", "-v", *tls, *address, sample.path)
    assert "Received Store Response (Success)" in stored.out, stored
    rows = await tls_hub.archive.search(
        Query(level="INSTANCE", keys={"SOPInstanceUID": sample.sop_uid})
    )
    assert len(rows) == 1
