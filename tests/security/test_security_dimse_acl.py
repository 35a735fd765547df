"""The DIMSE allow-list: deny by default, per-AE services."""

from __future__ import annotations

import pytest

from hub.security import ae_permitted
from hub.security.dimse_acl import SERVICES, allow_ae, remove_ae


async def test_unknown_ae_is_refused_everything(engine) -> None:
    for service in SERVICES:
        assert not await ae_permitted(engine, "STRANGER", service)


async def test_services_per_ae(engine) -> None:
    await allow_ae(engine, "US_CART", ["store", "worklist"])
    await allow_ae(engine, "VIEWER", ["find", "move", "get"])
    assert await ae_permitted(engine, "US_CART", "store")
    assert await ae_permitted(engine, "US_CART ", "worklist")  # padded as on the wire
    assert not await ae_permitted(engine, "US_CART", "find")
    assert await ae_permitted(engine, "VIEWER", "move")
    assert not await ae_permitted(engine, "VIEWER", "store")
    assert not await ae_permitted(engine, "us_cart", "store")  # AE titles are case-sensitive
    await allow_ae(engine, "US_CART", ["find"])  # replaces, does not add
    assert not await ae_permitted(engine, "US_CART", "store")
    assert await remove_ae(engine, "US_CART")
    assert not await ae_permitted(engine, "US_CART", "find")


async def test_bad_input(engine) -> None:
    with pytest.raises(ValueError, match="unknown DIMSE service"):
        await ae_permitted(engine, "X", "delete")
    with pytest.raises(ValueError, match="invalid AE title"):
        await allow_ae(engine, "A" * 17, ["store"])
    assert not await ae_permitted(engine, "", "store")
    assert not await ae_permitted(engine, "A\\B", "store")
