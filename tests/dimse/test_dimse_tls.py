"""DICOM over TLS on the DIMSE port (Settings.dimse.tls) with dcmtk peers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dimse_peers import (
    AE,
    HOST,
    DimseHub,
    StoreSCP,
    dataset_sha,
    need_dcmtk,
    retrieve_samples,
    run,
    running_dimse_hub,
    store_with_storescu,
)
from hubtest import free_port
from pydicom import dcmread

from hub.archive.query import Query
from hub.config import DimseSettings, Settings
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
        dimse=DimseSettings(tls={"cert": str(cert), "key": str(key)}),
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


@pytest.mark.parametrize("trusted", [True, False])
async def test_move_to_a_tls_destination(tmp_path: Path, trusted: bool) -> None:
    """A C-MOVE destination configured with TLS gets the objects over TLS, byte for byte, when
    its certificate checks out against the configured CA (here the certificate itself), and
    nothing when it does not."""
    need_dcmtk()
    cert, key = make_self_signed(tmp_path / "receiver-tls")
    ca = cert if trusted else make_self_signed(tmp_path / "someone-else")[0]
    receiver = StoreSCP(tmp_path / "received", free_port(), ae="TLSRECV", tls=(key, cert)).start()
    try:
        where = {"host": HOST, "port": receiver.port, "tls": {"ca_file": str(ca)}}
        settings = Settings(
            data_dir=tmp_path / "data",
            dimse_port=0,
            ae_title=AE,
            dimse=DimseSettings(move_destinations={"TLSRECV": where}),
        )
        async with running_dimse_hub(settings) as hub:
            sample = next(s for s in retrieve_samples() if s.path.name == "CT_small.dcm")
            await store_with_storescu(hub.address, [sample], tmp_path)
            study = dcmread(sample.path, stop_before_pixels=True).StudyInstanceUID
            moved = await run(
                "movescu", "-v", "-S", "-aem", "TLSRECV", "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={study}", *hub.address,
            )  # fmt: skip
            if not trusted:
                assert "Final Move Response (Success)" not in moved.out, moved
                assert receiver.files() == []
                return
            assert "Final Move Response (Success)" in moved.out, moved
            (received,) = receiver.files()
            (ref,) = await hub.archive.instances(study, sop_uid=sample.sop_uid)
            assert dataset_sha(received) == dataset_sha(hub.archive.store.path(ref.sha256))
    finally:
        receiver.stop()
