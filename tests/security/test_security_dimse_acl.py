"""The DIMSE allow-list: deny by default, per-AE services, the principal an AE acts as."""

from __future__ import annotations

import pytest

from hub.security import ae_permitted
from hub.security.accounts import AccountError, create_user
from hub.security.dimse_acl import SERVICES, Peer, allow_ae, list_ae, remove_ae, resolve


async def test_unknown_ae_is_refused_everything(engine) -> None:
    for service in SERVICES:
        assert not await ae_permitted(engine, "STRANGER", service)


async def test_services_per_ae(engine) -> None:
    await allow_ae(engine, "US_CART", ["store", "worklist"], role="clinic")
    await allow_ae(engine, "VIEWER", ["find", "move", "get"], role="pathologist")
    assert await ae_permitted(engine, "US_CART", "store")
    assert await ae_permitted(engine, "US_CART ", "worklist")  # padded as on the wire
    assert not await ae_permitted(engine, "US_CART", "find")
    assert await ae_permitted(engine, "VIEWER", "move")
    assert not await ae_permitted(engine, "VIEWER", "store")
    assert not await ae_permitted(engine, "us_cart", "store")  # AE titles are case-sensitive
    await allow_ae(engine, "US_CART", ["find"], role="clinic")  # replaces, does not add
    assert not await ae_permitted(engine, "US_CART", "store")
    assert await remove_ae(engine, "US_CART")
    assert not await ae_permitted(engine, "US_CART", "find")


async def test_an_ae_acts_as_an_account_or_an_ae_only_principal(engine) -> None:
    await create_user(engine, "clinicA", "clinic", None)
    await allow_ae(engine, "CLINICA_US", ["store", "find"], user="clinicA")
    await allow_ae(engine, "PACS2", ["find"], role="integration")
    grant = await resolve(engine, Peer("CLINICA_US", "10.0.0.5"))
    assert grant is not None
    assert (grant.principal.user, grant.principal.role) == ("clinicA", "clinic")
    other = await resolve(engine, Peer("PACS2", "10.0.0.5"))
    assert other is not None
    assert (other.principal.user, other.principal.role) == ("ae:PACS2", "integration")
    listed = {e["ae_title"]: e for e in await list_ae(engine)}
    assert listed["CLINICA_US"]["effective_role"] == "clinic"
    assert listed["PACS2"]["services"] == ["find"]

    with pytest.raises(AccountError):  # an account could otherwise read what PACS2 stored
        await create_user(engine, "ae:PACS2", "clinic", None)


async def test_role_bounds_what_an_entry_may_grant(engine) -> None:
    with pytest.raises(ValueError, match="may not use store"):
        await allow_ae(engine, "READER", ["store"], role="pathologist")
    with pytest.raises(ValueError, match="worklist needs worklist.read"):
        await allow_ae(engine, "READER", ["find", "worklist"], role="specialist")
    with pytest.raises(ValueError, match="no user"):
        await allow_ae(engine, "READER", ["find"], user="nobody")
    with pytest.raises(ValueError, match="not both"):
        await allow_ae(engine, "READER", ["find"])


async def test_address_and_certificate_bindings(engine) -> None:
    fingerprint = "AB:" * 31 + "CD"
    await allow_ae(engine, "NEAR", ["find"], role="admin", address="192.168.7.0/24")
    await allow_ae(engine, "PINNED", ["find"], role="admin", certificate=fingerprint)
    await allow_ae(engine, "NAMED", ["find"], role="admin", certificate="CN=us1,O=Clinic A")
    assert await resolve(engine, Peer("NEAR", "192.168.7.20")) is not None
    assert await resolve(engine, Peer("NEAR", "192.168.8.20")) is None
    digest = fingerprint.replace(":", "").lower()
    assert await resolve(engine, Peer("PINNED", "::1")) is None  # no TLS, no certificate
    assert await resolve(engine, Peer("PINNED", "::1", cert_sha256=digest)) is not None
    assert await resolve(engine, Peer("PINNED", "::1", cert_sha256="00" * 32)) is None
    assert await resolve(engine, Peer("NAMED", "::1", cert_subject="CN=us1,O=Clinic A"))
    assert await resolve(engine, Peer("NAMED", "::1", cert_subject="CN=us2,O=Clinic A")) is None


async def test_bad_input(engine) -> None:
    with pytest.raises(ValueError, match="unknown DIMSE service"):
        await ae_permitted(engine, "X", "delete")
    with pytest.raises(ValueError, match="invalid AE title"):
        await allow_ae(engine, "A" * 17, ["store"], role="admin")
    with pytest.raises(ValueError, match="not an IP address"):
        await allow_ae(engine, "A", ["find"], role="admin", address="clinic.example")
    with pytest.raises(ValueError, match="neither a SHA-256"):
        await allow_ae(engine, "A", ["find"], role="admin", certificate="not a = subject, =")
    assert not await ae_permitted(engine, "", "store")
    assert not await ae_permitted(engine, "A\\B", "store")
