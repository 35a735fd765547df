"""The DIMSE allow-list end to end: dcmtk storescu against the hub's SCP with the ACL on."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from hub.archive import NotFound
from hub.config import Settings
from hub.dimse.service import DIMSE_KEY
from hub.security.dimse_acl import allow_ae


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return Settings(data_dir=tmp_path / "data", port=port, dimse_port=0, extra={"dimse_acl": True})


async def _storescu(port: int, calling: str, aet: str, path: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "storescu", "-v", "-aet", calling, "-aec", aet, "127.0.0.1", str(port), path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.peers
async def test_only_allowed_aes_may_store(hub_server) -> None:
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk storescu is not installed")
    port = hub_server.app[DIMSE_KEY].server.port
    aet = hub_server.settings.ae_title
    ct = get_testdata_file("CT_small.dcm")
    study = dcmread(ct, stop_before_pixels=True).StudyInstanceUID

    _, out = await _storescu(port, "STRANGER", aet, ct)
    assert "Status: 0x124" in out, out  # Refused: Not Authorized
    with pytest.raises(NotFound):
        await hub_server.archive.instances(study)

    await allow_ae(hub_server.archive.engine, "MODALITY1", ["store"])
    rc, out = await _storescu(port, "MODALITY1", aet, ct)
    assert rc == 0 and "0x124" not in out, out
    refs = await hub_server.archive.instances(study)
    assert len(refs) == 1
