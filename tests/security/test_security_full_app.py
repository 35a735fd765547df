"""The access policy over the whole hub: every route of build_app has a rule, and the
role x route matrix holds for all of them (see test_security_matrix for the expectation)."""

from __future__ import annotations

from test_security_matrix import route_table, walk_matrix

from hub.security.accounts import create_user, issue_token
from hub.security.middleware import SECURITY_KEY
from hub.security.policy import rule_for

ROLES = ("admin", "pathologist", "specialist", "clinic", "integration")


def _require_gate(app) -> None:
    assert SECURITY_KEY in app, (
        "hub.app.build_app must call hub.security.setup(app) before the other doors"
    )


def test_every_route_of_the_hub_has_an_access_rule(hub_server) -> None:
    _require_gate(hub_server.app)
    unruled = [
        f"{m} {p} name={n!r}" for m, p, n in route_table(hub_server.app) if not rule_for(n)[0]
    ]
    assert not unruled, "routes without an access rule (name them per the contract):\n" + "\n".join(
        unruled
    )


async def test_role_route_matrix_of_the_hub(hub_server) -> None:
    _require_gate(hub_server.app)
    # Administrators only, on every hub (with or without a backup schedule).
    assert ("GET", "/api/backup/status", "admin.backup.status") in route_table(hub_server.app)
    # The DIMSE peers (C-MOVE destinations): administrators only, with or without a DIMSE port.
    for method, path, name in (
        ("GET", "/api/admin/peers", "admin.peers.list"),
        ("PUT", "/api/admin/peers/1", "admin.peers.save"),
        ("DELETE", "/api/admin/peers/1", "admin.peers.remove"),
        ("POST", "/api/admin/peers/1/echo", "admin.peers.echo"),
    ):
        assert (method, path, name) in route_table(hub_server.app)
    # Open to everyone, as a published conformance statement is.
    assert ("GET", "/api/conformance", "public.conformance.statement") in route_table(
        hub_server.app
    )
    assert ("GET", "/conformance", "public.conformance.page") in route_table(hub_server.app)
    engine = hub_server.archive.engine
    tokens = {}
    for role in ROLES:
        await create_user(engine, f"matrix-{role}", role, None)
        tokens[role] = (await issue_token(engine, f"matrix-{role}", ttl_seconds=600))[1]
    failures = await walk_matrix(hub_server.url, hub_server.app, tokens)
    assert not failures, "\n".join(failures)


async def test_dicomweb_reads_are_audited_once_per_study(hub_server) -> None:
    from pathlib import Path

    import aiohttp
    import pydicom
    from pydicom.data import get_testdata_file
    from sqlalchemy import select

    from hub.archive import Source
    from hub.security.audit_trail import _logs
    from hub.security.tables import audit_log

    engine = hub_server.archive.engine
    path = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    await hub_server.archive.ingest_file(path, source=Source(door="import"))
    await create_user(engine, "reader", "pathologist", None)
    _, secret = await issue_token(engine, "reader")
    headers = {"Authorization": f"Bearer {secret}"}
    study_url = f"{hub_server.url}/dicomweb/studies/{ds.StudyInstanceUID}"
    async with aiohttp.ClientSession(headers=headers) as session:
        for url in (study_url + "/metadata", study_url + "/metadata", study_url + "/series"):
            async with session.get(url) as resp:
                assert resp.status == 200
        async with session.get(f"{hub_server.url}/dicomweb/studies?PatientID=1CT1") as resp:
            assert resp.status == 200
    await _logs[engine].flush()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(audit_log).where(audit_log.c.who == "reader"))).all()
    reads = [r for r in rows if r.action == "study.read"]
    assert len(reads) == 1
    assert reads[0].patient == ds.PatientID and reads[0].study == ds.StudyInstanceUID
    queries = [r for r in rows if r.action == "query"]
    assert len(queries) == 1 and "PatientID=1CT1" in queries[0].detail


async def test_clinics_and_specialists_see_only_their_part(hub_server) -> None:
    from pathlib import Path

    import aiohttp
    import pydicom
    from pydicom.data import get_testdata_file

    from hub.archive import Source

    engine = hub_server.archive.engine
    uids = {}
    for name, actor in (("CT_small.dcm", "clinic-a"), ("US1_J2KR.dcm", "clinic-b")):
        path = Path(get_testdata_file(name))
        result = await hub_server.archive.ingest_file(path, source=Source("stow", actor=actor))
        assert result.ok
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uids[name] = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    tokens = {}
    for user, role in (("clinic-a", "clinic"), ("dr-us", "specialist"), ("dr-path", "pathologist")):
        await create_user(engine, user, role, None)
        tokens[user] = (await issue_token(engine, user))[1]

    def url(name: str) -> str:
        study, series, sop = uids[name]
        base = f"{hub_server.url}/dicomweb/studies/{study}/series/{series}/instances/{sop}"
        return base + "/metadata"

    expected = {
        "clinic-a": {"CT_small.dcm": 200, "US1_J2KR.dcm": 404},
        "dr-us": {"CT_small.dcm": 404, "US1_J2KR.dcm": 200},
        "dr-path": {"CT_small.dcm": 200, "US1_J2KR.dcm": 200},
    }
    async with aiohttp.ClientSession() as session:
        for user, cases in expected.items():
            headers = {"Authorization": f"Bearer {tokens[user]}"}
            for name, status in cases.items():
                for _ in range(2):  # the second answer may come from the cache
                    async with session.get(url(name), headers=headers) as resp:
                        assert resp.status == status, (user, name)
            # Searches list only what the caller may open.
            wanted = {uids[name][0] for name, status in cases.items() if status == 200}
            for level, tag in (("studies", "0020000D"), ("instances", "00080018")):
                async with session.get(f"{hub_server.url}/dicomweb/{level}", headers=headers) as r:
                    assert r.status == 200
                    found = {row[tag]["Value"][0] for row in await r.json(content_type=None)}
                if level == "studies":
                    assert found == wanted, (user, level)
                else:
                    assert found == {uids[n][2] for n in cases if cases[n] == 200}, (user, level)
