"""The administration API: users, tokens, audit and the DIMSE allow-list, admins only."""

from __future__ import annotations

import asyncio

import aiohttp
from security_support import Gate


async def test_admin_manages_users_and_tokens(gate: Gate) -> None:
    admin = gate.headers("admin")
    async with aiohttp.ClientSession(headers=admin) as s:
        async with s.post(gate.url + "/api/admin/users",
                          json={"username": "lab1", "role": "clinic"}) as r:  # fmt: skip
            assert r.status == 201
            created = await r.json()
            assert created["role"] == "clinic" and len(created["password"]) >= 12
        async with s.post(gate.url + "/api/admin/users",
                          json={"username": "lab1", "role": "clinic"}) as r:  # fmt: skip
            assert r.status == 400 and "exists" in (await r.json())["detail"]
        async with s.post(gate.url + "/api/admin/users",
                          json={"username": "x", "role": "janitor"}) as r:  # fmt: skip
            assert r.status == 400
        wanted = {"username": "lab1", "scopes": ["dicomweb.write"], "days": 1}
        async with s.post(gate.url + "/api/admin/tokens", json=wanted) as r:
            assert r.status == 201
            issued = await r.json()
        async with s.get(gate.url + "/api/admin/tokens?user=lab1") as r:
            listed = await r.json()
            assert [t["id"] for t in listed] == [issued["id"]]
            assert issued["token"] not in str(listed)

    lab = {"Authorization": f"Bearer {issued['token']}"}
    async with aiohttp.ClientSession(headers=lab) as s:
        async with s.post(gate.url + "/dicomweb/studies") as r:
            assert r.status == 200
        async with s.get(gate.url + "/dicomweb/studies") as r:
            assert r.status == 403  # scoped to writing
        async with s.get(gate.url + "/api/admin/users") as r:
            assert r.status == 403

    async with aiohttp.ClientSession(headers=admin) as s:
        async with s.delete(gate.url + f"/api/admin/tokens/{issued['id']}") as r:
            assert r.status == 200
        async with s.delete(gate.url + f"/api/admin/tokens/{issued['id']}") as r:
            assert r.status == 404
        async with s.post(gate.url + "/api/admin/users/lab1/disable", json={}) as r:
            assert r.status == 200
        async with s.get(gate.url + "/api/admin/users") as r:
            users = {u["username"]: u for u in await r.json()}
            assert users["lab1"]["disabled"] is True
    async with aiohttp.ClientSession(headers=lab) as s, s.post(gate.url + "/dicomweb/studies") as r:
        assert r.status == 401


async def test_admin_audit_and_ae_endpoints(gate: Gate) -> None:
    async with aiohttp.ClientSession(headers=gate.headers("admin")) as s:
        async with s.put(gate.url + "/api/admin/ae/US_CART",
                         json={"services": ["store", "worklist"], "role": "clinic"}) as r:  # fmt: skip
            assert r.status == 200
        async with s.put(gate.url + "/api/admin/ae/NOBODY", json={"services": ["find"]}) as r:
            assert r.status == 400  # as whom?
        async with s.put(gate.url + "/api/admin/ae/US_CART", json={"services": ["erase"]}) as r:
            assert r.status == 400
        async with s.get(gate.url + "/api/admin/ae") as r:
            (row,) = await r.json()
            assert row["ae_title"] == "US_CART" and row["store"] and not row["find"]
        async with s.get(gate.url + "/api/admin/audit/verify") as r:
            verdict = await r.json()
            assert verdict["ok"] and verdict["records"] >= 1
        async with s.get(gate.url + "/api/admin/audit/export") as r:
            lines = (await r.text()).splitlines()
            assert any(" ae.allow " in line and 'who="admin-user"' in line for line in lines)
        async with s.delete(gate.url + "/api/admin/ae/US_CART") as r:
            assert r.status == 200


async def test_allow_list_edits_are_versioned_and_audited_with_old_and_new(gate: Gate) -> None:
    entry = gate.url + "/api/admin/ae/US_CART"
    first = {"services": ["store"], "role": "clinic", "version": 0}
    async with aiohttp.ClientSession(headers=gate.headers("admin")) as s:
        async with s.put(entry, json=first) as r:
            added = await r.json()
            assert (r.status, added["version"], added["services"]) == (200, 1, ["store"]), added
            assert added["updated_by"] == "admin-user"
        async with s.put(entry, json=first) as r:  # added meanwhile by someone else
            refused = await r.json()
            assert (r.status, refused["conflict"]) == (409, "version"), refused
            assert "is at version 1, not 0" in refused["detail"]

        wider = {**first, "services": ["store", "worklist"], "version": 1}
        async with s.put(entry, json=wider) as r:
            assert (r.status, (await r.json())["version"]) == (200, 2)
        async with s.put(entry, json={**first, "services": ["find"], "version": 1}) as r:
            assert r.status == 409  # a second editor who read version 1 overwrites nothing
        async with s.delete(entry + "?version=1") as r:
            assert (r.status, (await r.json())["conflict"]) == (409, "version")
        assert await _statuses_of_two_at_once(s, gate.url + "/api/admin/ae/PROBE", first) == [
            200,
            409,
        ]
        again = {**first, "version": 1}
        assert await _statuses_of_two_at_once(s, gate.url + "/api/admin/ae/PROBE", again) == [
            200,
            409,
        ]
        async with s.delete(gate.url + "/api/admin/ae/PROBE") as r:
            assert r.status == 200
        async with s.get(gate.url + "/api/admin/ae") as r:
            (row,) = await r.json()
            assert (row["version"], row["services"]) == (2, ["store", "worklist"])
        async with s.delete(entry + "?version=2") as r:
            assert (r.status, (await r.json())["removed"]) == (200, True)
        async with s.delete(entry) as r:
            assert r.status == 404

        async with s.get(gate.url + "/api/admin/audit", params={"action": "ae."}) as r:
            records = (await r.json())["records"]
    details = {(rec["action"], (rec["detail"]["new"] or {}).get("version")): rec["detail"]
               for rec in records}  # fmt: skip
    assert set(details) == {("ae.allow", 1), ("ae.allow", 2), ("ae.remove", None)}
    assert details["ae.allow", 1]["old"] is None
    changed = details["ae.allow", 2]
    assert (changed["old"]["services"], changed["new"]["services"]) == (
        ["store"],
        ["store", "worklist"],
    )
    assert details["ae.remove", None]["old"]["version"] == 2


async def _statuses_of_two_at_once(s: aiohttp.ClientSession, url: str, body: dict) -> list[int]:
    """Two editors who read the same version save at the same moment: one of them wins."""

    async def put() -> int:
        async with s.put(url, json=body) as r:
            return r.status

    return sorted(await asyncio.gather(put(), put()))
