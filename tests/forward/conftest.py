"""Fixtures for the forwarding tests: real receivers and an archive that can be reopened."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from forward_peers import Hub, RefusingSCP, StoreSCP


@pytest.fixture
def storescp_factory(tmp_path: Path) -> Iterator[Callable[..., StoreSCP]]:
    if shutil.which("storescp") is None:
        pytest.skip("dcmtk storescp is not installed")
    started: list[StoreSCP] = []

    def make(name: str = "pacs", **kwargs) -> StoreSCP:
        scp = StoreSCP(tmp_path / name, **kwargs)
        started.append(scp)
        return scp

    yield make
    for scp in started:
        scp.stop()


@pytest.fixture
def refusing_scp() -> Iterator[RefusingSCP]:
    scp = RefusingSCP()
    scp.start()
    yield scp
    scp.stop()


@pytest.fixture
async def hub_factory(tmp_path: Path, new_database, monkeypatch):
    """Hubs on ``tmp_path`` (or a given data dir): each data dir is one hub, reopened with the
    same index database, apart from any other hub of the test (``hub_server`` included). The
    command-line tools a test runs see the first one."""
    opened: list[Hub] = []
    databases: dict[Path, str | None] = {}

    async def make(forward: dict, data_dir: Path | None = None, **extra) -> Hub:
        data_dir = data_dir or tmp_path / "forwarding-hub"
        if data_dir not in databases:
            databases[data_dir] = url = await new_database()
            if url and len(databases) == 1:
                monkeypatch.setenv("TESSERA_DATABASE_URL", url)
        hub = Hub(data_dir, forward, databases[data_dir], **extra)
        opened.append(hub)
        return await hub.open()

    yield make
    for hub in opened:
        await hub.close()
