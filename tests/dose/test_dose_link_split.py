"""An administrator links two identities into one person, or splits studies off one, through
the API; each change is in the audit trail."""

from __future__ import annotations

from pathlib import Path

from dose_support import as_new_study, ingest, read, write
from sqlalchemy import select

from hub.security.audit_trail import _logs
from hub.security.tables import audit_log

SHARED = ("CT-RDSR-Siemens-Multi-3.dcm", "CT-RDSR-Toshiba_DoseCheck.dcm")


async def _patients(session, url: str) -> dict[str, dict]:
    async with session.get(f"{url}/api/dose/patients") as resp:
        return {p["name"]: p for p in (await resp.json())["patients"]}


async def _audited(hub_server, action: str) -> list:
    engine = hub_server.archive.engine
    await _logs[engine].flush()
    async with engine.connect() as conn:
        return (await conn.execute(select(audit_log).where(audit_log.c.action == action))).all()


async def test_link_then_split_moves_the_records_and_is_audited(
    openrem: Path, hub_server, tmp_path: Path
) -> None:
    for name in SHARED:
        await ingest(hub_server.archive, openrem / name)
    url = hub_server.url
    async with hub_server.session() as session:
        before = await _patients(session, url)
        multi, other = before["OpenREM^MultiRDSR"], before["Križ^Gilead"]
        assert other["review"] and not multi["review"]
        async with session.post(
            f"{url}/api/dose/patients/{other['id']}/link", json={"into": multi["id"]}
        ) as resp:
            assert resp.status == 200
            linked = await resp.json()
        assert len(linked["studies"]) == 2 and len(linked["events"]) == 5
        after = await _patients(session, url)
        assert set(after) == {"OpenREM^MultiRDSR"}
        assert (after["OpenREM^MultiRDSR"]["studies"], after["OpenREM^MultiRDSR"]["review"]) == (
            2,
            False,
        )
        # linking what is already linked, or into nothing, is refused with a reason
        async with session.post(
            f"{url}/api/dose/patients/{other['id']}/link", json={"into": multi["id"]}
        ) as resp:
            assert resp.status == 409 and "is linked into" in (await resp.json())["detail"]
        async with session.post(
            f"{url}/api/dose/patients/{multi['id']}/link", json={"into": 999}
        ) as resp:
            assert resp.status == 404
        # a later study of the linked person joins the identity it was linked into
        later = write(as_new_study(read(openrem / SHARED[1])), tmp_path, "later.dcm")
        await ingest(hub_server.archive, later)
        assert set(await _patients(session, url)) == {"OpenREM^MultiRDSR"}
        toshiba_study = read(openrem / SHARED[1]).StudyInstanceUID
        async with session.post(
            f"{url}/api/dose/patients/{multi['id']}/split", json={"studies": [toshiba_study]}
        ) as resp:
            assert resp.status == 201
            split = await resp.json()
        assert [s["study_uid"] for s in split["studies"]] == [toshiba_study]
        assert split["identity"]["review"]
        async with session.post(
            f"{url}/api/dose/patients/{multi['id']}/split", json={"studies": ["1.2.3"]}
        ) as resp:
            assert resp.status == 400 and "not studies of identity" in (await resp.json())["detail"]
        async with session.post(
            f"{url}/api/dose/patients/{multi['id']}/split", json={"studies": "1.2.3"}
        ) as resp:
            assert resp.status == 400
        async with session.get(f"{url}/api/dose/patients/{multi['id']}") as resp:
            assert len((await resp.json())["events"]) == 3 + 2  # Multi's and the later study's
    (link,) = await _audited(hub_server, "dose.link")
    assert (link.who, link.patient) == ("test-admin", multi["patient_id"])
    (split_entry,) = await _audited(hub_server, "dose.split")
    assert toshiba_study in split_entry.detail
