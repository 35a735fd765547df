"""Fixtures for the DIMSE tests: the SCP on a free port over a temp archive, and a dcmtk
storescp to receive C-MOVEs."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dimse_peers import HOST, free_port, need_dcmtk, wait_for_port

import hub.worklist.model  # noqa: F401  (creates the worklist table with the archive)
from hub.archive import Archive
from hub.config import Settings
from hub.dimse.config import DimseConfig
from hub.dimse.service import DimseServer

AE = "TESSERA"


@dataclass
class StoreSCP:
    """dcmtk storescp writing what it receives, bit-preserving, into `folder`."""

    folder: Path
    port: int
    ae: str = "RECEIVER"
    proc: subprocess.Popen | None = None

    def start(self) -> StoreSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        # +B: write the received data set as it came; -xa/+xa: accept every transfer syntax.
        self.proc = subprocess.Popen(
            ["storescp", "-aet", self.ae, "+B", "+xa", "-od", str(self.folder), str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())


@dataclass
class DimseHub:
    archive: Archive
    server: DimseServer
    settings: Settings

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> list[str]:
        return ["-aec", AE, HOST, str(self.port)]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[StoreSCP]:
    need_dcmtk()
    scp = StoreSCP(tmp_path / "received", free_port()).start()
    yield scp
    scp.stop()


@pytest.fixture
async def dimse_hub(tmp_path: Path, receiver: StoreSCP) -> AsyncIterator[DimseHub]:
    need_dcmtk()
    settings = Settings(
        data_dir=tmp_path / "data",
        dimse_port=0,
        ae_title=AE,
        extra={"dimse_move_destinations": {receiver.ae: [HOST, receiver.port]}},
    )
    archive = await Archive.open(settings)
    server = DimseServer(archive, DimseConfig.from_settings(settings), asyncio.get_running_loop())
    await asyncio.to_thread(server.start)
    try:
        yield DimseHub(archive, server, settings)
    finally:
        await asyncio.to_thread(server.stop)
        await archive.close()
