"""The ``store`` and ``store_factory`` fixtures: one test per kind in ``blob_kinds.KINDS``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from blob_kinds import KINDS, StoreKind

from hub.archive.blobs import BlobStore


@pytest.fixture(params=sorted(KINDS))
def store_kind(request: pytest.FixtureRequest) -> StoreKind:
    return KINDS[request.param]


@pytest.fixture
async def store_factory(
    store_kind: StoreKind, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[[], Awaitable[BlobStore]]]:
    """Opens stores of the kind under test on one directory (closed after the test)."""
    opened: list[BlobStore] = []

    async def make() -> BlobStore:
        store = await store_kind.open(tmp_path, request)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(store_factory) -> BlobStore:
    return await store_factory()
