"""The DIMSE allow-list end to end: dcmtk tools against the whole hub's SCP.

Deny by default: an AE nobody allowed gets C-ECHO and nothing else. An allowed AE acts as a
principal with a role, and reads what that principal reads over DICOMweb: a clinic's AE and
the clinic's web account are the same principal.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from hubtest import free_port
from pydicom import dcmread
from pydicom.data import get_testdata_file

from hub.archive import NotFound, Source
from hub.config import Settings
from hub.dimse.service import DIMSE_KEY
from hub.security.accounts import create_user, issue_token

pytestmark = pytest.mark.peers

CT = Path(get_testdata_file("CT_small.dcm"))  # stored by the clinic's AE
MR = Path(get_testdata_file("MR_small.dcm"))  # another clinic's study


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", port=free_port(), dimse_port=0, database_url=database_url
    )


@pytest.fixture(autouse=True)
def need_dcmtk() -> None:
    if shutil.which("findscu") is None:
        pytest.skip("dcmtk is not installed")


async def _run(*cmd: str | Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *map(str, cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(errors="replace")


def _address(hub_server) -> list[str]:
    port = hub_server.app[DIMSE_KEY].server.port
    return ["-aec", hub_server.settings.ae_title, "127.0.0.1", str(port)]


async def _tessera(settings: Settings, *args: str) -> tuple[int, str]:
    """The `tessera` command line on the hub's data folder (the same API as the admin uses)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", *args, "--data", str(settings.data_dir),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(errors="replace")


def _uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


async def test_an_unlisted_ae_gets_only_echo(hub_server, tmp_path: Path) -> None:
    await hub_server.archive.ingest_file(CT, source=Source(door="import"))
    address = _address(hub_server)

    rc, out = await _run("echoscu", "-aet", "STRANGER", *address)
    assert rc == 0, out

    rc, out = await _run(
        "findscu", "-v", "-S", "-aet", "STRANGER", "-k", "QueryRetrieveLevel=STUDY",
        "-k", "PatientName", "-k", "StudyInstanceUID", *address,
    )  # fmt: skip
    assert "Received Final Find Response (Unknown Status: 0x124)" in out, out
    assert "Pending" not in out and "CompressedSamples" not in out, out  # not one patient

    got = tmp_path / "got"
    got.mkdir()
    rc, out = await _run(
        "getscu", "-v", "-S", "-aet", "STRANGER", "-od", got, "-k",
        "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={_uid(CT)}", *address,
    )  # fmt: skip
    assert "Received C-GET Response (Unknown Status: 0x124)" in out, out
    assert not list(got.iterdir()), out

    rc, out = await _run("storescu", "-v", "-aet", "STRANGER", *address, MR)
    assert "0x124" in out.lower(), out
    with pytest.raises(NotFound):
        await hub_server.archive.instances(_uid(MR))


async def test_a_clinic_ae_is_the_clinic(hub_server, tmp_path: Path) -> None:
    engine = hub_server.archive.engine
    await create_user(engine, "clinicA", "clinic", None)
    await create_user(engine, "clinicB", "clinic", None)
    await hub_server.archive.ingest_file(MR, source=Source(door="stow", actor="clinicB"))
    rc, out = await _tessera(
        hub_server.settings, "ae", "allow", "CLINICA_US", "store", "find", "get", "--as", "clinicA"
    )
    assert rc == 0, out
    address = _address(hub_server)

    rc, out = await _run("storescu", "-v", "-aet", "CLINICA_US", *address, CT)
    assert rc == 0 and "(Success)" in out, out

    found = tmp_path / "found"
    found.mkdir()
    rc, out = await _run(
        "findscu", "-S", "-aet", "CLINICA_US", "-X", "-od", found, "-k",
        "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", *address,
    )  # fmt: skip
    assert rc == 0, out
    studies = [str(dcmread(p).StudyInstanceUID) for p in found.iterdir()]
    assert studies == [_uid(CT)], out  # its own study, not clinicB's

    async def get(study: str, into: Path) -> list[Path]:
        into.mkdir()
        rc, out = await _run(
            "getscu", "-S", "-aet", "CLINICA_US", "-od", into, "-k", "QueryRetrieveLevel=STUDY",
            "-k", f"StudyInstanceUID={study}", *address,
        )  # fmt: skip
        return list(into.iterdir())

    assert await get(_uid(MR), tmp_path / "theirs") == []
    assert len(await get(_uid(CT), tmp_path / "own")) == 1

    # What the AE stored is clinicA's, over DICOMweb too.
    _, secret = await issue_token(engine, "clinicA")
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(hub_server.url + "/dicomweb/studies") as resp,
    ):
        assert resp.status == 200
        uids = [s["0020000D"]["Value"][0] for s in await resp.json()]
    assert uids == [_uid(CT)]
