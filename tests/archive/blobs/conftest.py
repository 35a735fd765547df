"""Fixtures of the blob store suites: every registered store (``seaweedfs``, the S3 server,
comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from factories import FACTORIES

from hub.archive.blobs import BlobStore


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "blob_store" in metafunc.fixturenames:
        metafunc.parametrize("blob_store", sorted(FACTORIES), indirect=True)


@pytest.fixture
async def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    async with FACTORIES[request.param](request, tmp_path) as store:
        yield store
