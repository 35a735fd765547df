"""Role x route matrix, walked from the application's own router table, and role x DIMSE
service, walked with a pynetdicom SCU against the DIMSE SCP.

The expectations below are the product's access table written out independently of
hub.security.policy; a route whose name no rule covers fails ``test_every_route_has_a_rule``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE as PeerAE
from pynetdicom import build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    ModalityWorklistInformationFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from security_support import ROLES, Gate
from sqlalchemy import update

import hub.worklist.model  # noqa: F401  (the worklist table exists when the archive opens)
from hub.archive import Archive
from hub.config import DimseSettings, Settings
from hub.dimse.config import DimseConfig
from hub.dimse.service import DimseServer
from hub.errors import PROBLEM_JSON
from hub.security.accounts import create_user
from hub.security.dimse_acl import SERVICES, allow_ae
from hub.security.policy import rule_for
from hub.security.tables import users

HOST = "127.0.0.1"
CT = dcmread(get_testdata_file("CT_small.dcm"))

# role -> route-name areas it may use (longest prefix wins). "*": everything with a rule.
EXPECTED: dict[str, set[str]] = {
    "admin": {"*"},
    "pathologist": {
        "page",
        "account",
        "describe",
        "dicomweb.read",
        "jobs.read",
        "annotations.write",
        "ai.run",
        "ai.read",
    },
    "specialist": {
        "page",
        "account",
        "describe",
        "dicomweb.read",
        "telehealth.join",
        "telehealth.signal",
        "telehealth.capture",
    },
    "clinic": {
        "page",
        "account",
        "describe",
        "dicomweb.read",
        "dicomweb.write",
        "slides.upload",
        "jobs.read",
        "worklist.read",
        "telehealth.start",
        "telehealth.signal",
        "telehealth.capture",
    },
    "integration": {"page", "account", "describe", "dicomweb.read", "dicomweb.write", "ai.read"},
}


def expected_allowed(role: str | None, name: str) -> bool:
    if not rule_for(name)[0]:
        return False
    if name.startswith("public."):
        return True
    if role is None:
        return False
    granted = EXPECTED[role]
    return "*" in granted or any(name == a or name.startswith(a + ".") for a in granted)


def route_table(app: web.Application) -> list[tuple[str, str, str | None]]:
    """(method, concrete path, route name) for every route, placeholders filled in."""
    table = []
    for resource in app.router.resources():
        info = resource.get_info()
        if "prefix" in info:  # static directory
            path = info["prefix"].rstrip("/") + "/probe.txt"
        else:
            path = info.get("path") or info["formatter"]
            path = re.sub(r"\{[^}]*\}", "1", path)
        for route in resource:
            if route.method == "HEAD":
                continue
            method = "GET" if route.method == "*" else route.method
            table.append((method, path, resource.name))
    return table


async def _probe(
    session: aiohttp.ClientSession, base: str, method: str, path: str, headers: dict
) -> tuple[int, dict | None]:
    """Status and, when the gate refused, its JSON body. A handler that takes its time
    passed the gate (the gate answers at once), so a timeout counts as let through."""
    try:
        async with session.request(
            method,
            base + path,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=5),
        ) as resp:
            body = None
            if resp.status in (401, 403) and resp.content_type == PROBLEM_JSON:
                body = await resp.json()
            return resp.status, body
    except TimeoutError:
        return 200, None


def refused_by_gate(status: int, body: dict | None, anonymous: bool) -> bool:
    if status == 403 and body is not None and "permission" in body:
        return True
    return anonymous and status in (401, 303)


async def walk_matrix(base: str, app: web.Application, tokens: dict[str, str]) -> list[str]:
    failures = []
    principals: list[tuple[str | None, dict]] = [(None, {})]
    principals += [(role, {"Authorization": f"Bearer {tokens[role]}"}) for role in ROLES]
    async with aiohttp.ClientSession() as session:
        for method, path, name in route_table(app):
            for role, headers in principals:
                status, body = await _probe(session, base, method, path, headers)
                refused = refused_by_gate(status, body, role is None)
                if refused == expected_allowed(role, name or ""):
                    verdict = "refused" if refused else "let through"
                    failures.append(f"{role or 'anonymous'} {method} {path} ({name}): {verdict}")
                if status >= 500:
                    failures.append(f"{role or 'anonymous'} {method} {path} ({name}): {status}")
    return failures


def test_every_route_has_a_rule_flags_unknown_names(gate: Gate) -> None:
    missing = [(m, p, n) for m, p, n in route_table(gate.app) if not rule_for(n)[0]]
    # The small app deliberately carries an unnamed route and one in an unknown area.
    assert sorted(n or "" for _, _, n in missing) == ["", "mystery.thing"]


async def test_role_route_matrix(gate: Gate) -> None:
    failures = await walk_matrix(gate.url, gate.app, gate.tokens)
    assert not failures, "\n".join(failures)


async def test_unknown_and_unnamed_routes_refused_even_for_admin(gate: Gate) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/unnamed", "/mystery"):
            async with session.get(gate.url + path, headers=gate.headers("admin")) as resp:
                assert resp.status == 403
                assert "no access rule" in (await resp.json())["detail"]


async def test_missing_credentials_get_a_bearer_challenge(gate: Gate) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gate.url + "/dicomweb/studies") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="tessera"')
        async with session.get(gate.url + "/", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/login?next=/"
        bad = {"Authorization": "Bearer tsr_not-a-real-token"}
        async with session.get(gate.url + "/dicomweb/studies", headers=bad) as resp:
            assert resp.status == 401
            assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_principal_reaches_the_handler(gate: Gate) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(gate.url + "/api/jobs/7", headers=gate.headers("clinic")) as resp,
    ):
        assert resp.status == 200
        assert await resp.json() == {"route": "jobs.read.status", "user": "clinic-user"}


async def test_refusals_are_audited(gate: Gate) -> None:
    from hub.security.tables import audit_log

    async with (
        aiohttp.ClientSession() as session,
        session.post(gate.url + "/api/worklist", headers=gate.headers("specialist")) as resp,
    ):
        assert resp.status == 403
    await asyncio.sleep(0)  # the writer is asynchronous: flush it
    from hub.security.audit_trail import _logs

    await _logs[gate.engine].flush()
    async with gate.engine.connect() as conn:
        rows = (await conn.execute(audit_log.select())).all()
    denied = [r for r in rows if r.action == "access.denied"]
    assert len(denied) == 1
    assert denied[0].who == "specialist-user" and denied[0].outcome == "denied"
    assert "worklist.write.item" in denied[0].detail


async def test_small_request_areas_are_cut_off_when_too_slow(gate: Gate, monkeypatch) -> None:
    from hub.security import middleware

    monkeypatch.setattr(middleware, "SMALL_REQUEST_SECONDS", 0.2)
    async with (
        aiohttp.ClientSession() as session,
        session.get(gate.url + "/api/worklist-stall", headers=gate.headers("clinic")) as resp,
    ):
        assert resp.status == 504


async def test_small_request_areas_refuse_big_bodies(gate: Gate) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gate.url + "/api/worklist", data=b"x" * 70_000, headers=gate.headers("admin")
        ) as resp,
    ):
        assert resp.status == 413


# --- DIMSE: role x service ---------------------------------------------------------------------

DIMSE_SERVICES = ("echo", "store", "find", "move", "get", "worklist")
# role -> DIMSE services its AE may use when its entry lists them all; None: an AE that is on
# no entry. Written out from the product's access table, not computed from the policy.
EXPECTED_DIMSE: dict[str | None, set[str]] = {
    "admin": {"echo", "store", "find", "move", "get", "worklist"},
    "pathologist": {"echo", "find", "move", "get"},
    "specialist": {"echo", "find", "move", "get"},
    "clinic": {"echo", "store", "find", "move", "get", "worklist"},
    "integration": {"echo", "store", "find", "move", "get"},
    None: {"echo"},
}
NOT_AUTHORIZED = 0x0124
MOVE_DESTINATION = "MATRIXDEST"


@dataclass
class DimseMatrix:
    port: int
    ae_title: str


def _dimse_ae_title(role: str | None) -> str:
    return f"{role.upper()}_AE" if role else "UNLISTED_AE"


@pytest.fixture
async def dimse_matrix(tmp_path: Path) -> AsyncIterator[DimseMatrix]:
    """The DIMSE SCP over a fresh archive: one AE per role bound to an account of that role,
    listed for every service. The accounts start as administrators (so that the entries may
    name every service) and then get their real role: what the role forbids is refused when
    the AE calls, whatever its entry says."""
    receiver = PeerAE(ae_title=MOVE_DESTINATION)
    receiver.add_supported_context(CTImageStorage)
    receiver.add_supported_context(Verification)  # a refused C-MOVE still associates first
    sink = receiver.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0x0000)]
    )
    destination = [HOST, sink.server_address[1]]
    settings = Settings(
        data_dir=tmp_path / "data",
        dimse_port=0,
        dimse=DimseSettings(move_destinations={MOVE_DESTINATION: destination}),
    )
    archive = await Archive.open(settings)
    for role in ROLES:
        await create_user(archive.engine, f"dimse-{role}", "admin", None)
        await allow_ae(archive.engine, _dimse_ae_title(role), list(SERVICES), user=f"dimse-{role}")
        async with archive.engine.begin() as conn:
            await conn.execute(
                update(users).where(users.c.username == f"dimse-{role}").values(role=role)
            )
    server = DimseServer(archive, DimseConfig.from_settings(settings), asyncio.get_running_loop())
    await asyncio.to_thread(server.start)
    try:
        yield DimseMatrix(server.port, settings.ae_title)
    finally:
        await asyncio.to_thread(server.stop)
        await archive.close()
        sink.shutdown()


def _new_study() -> Dataset:
    """CT_small as a study of its own: a store into a study the AE cannot read is refused
    whatever its services, which is not what this matrix is about."""
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def _identifier(level: str = "STUDY") -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.StudyInstanceUID = CT.StudyInstanceUID
    return ds


def _worklist_identifier() -> Dataset:
    ds = Dataset()
    ds.PatientID = ""
    step = Dataset()
    step.Modality = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def _last_status(responses) -> tuple[int | None, str]:
    status, comment = None, ""
    for response, *_ in responses:
        if response is not None and "Status" in response:
            status = response.Status
            comment = str(response.get("ErrorComment", ""))
    return status, comment


def _dimse_outcomes(matrix: DimseMatrix, calling: str) -> dict[str, tuple[int | None, str]]:
    """Each service's final status (and ErrorComment) for one calling AE, over one association."""
    scu = PeerAE(ae_title=calling)
    scu.acse_timeout = scu.dimse_timeout = scu.network_timeout = 30
    for context in (
        Verification,
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelGet,
        ModalityWorklistInformationFind,
    ):
        scu.add_requested_context(context)
    role = build_role(CTImageStorage, scu_role=True, scp_role=True)
    assoc = scu.associate(
        HOST,
        matrix.port,
        ae_title=matrix.ae_title,
        ext_neg=[role],
        evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)],  # what C-GET sends back
    )
    assert assoc.is_established
    try:
        echo = assoc.send_c_echo()
        store = assoc.send_c_store(_new_study())
        return {
            "echo": (echo.Status, ""),
            "store": (store.Status, str(store.get("ErrorComment", ""))),
            "find": _last_status(
                assoc.send_c_find(_identifier(), StudyRootQueryRetrieveInformationModelFind)
            ),
            "move": _last_status(
                assoc.send_c_move(
                    _identifier(), MOVE_DESTINATION, StudyRootQueryRetrieveInformationModelMove
                )
            ),
            "get": _last_status(
                assoc.send_c_get(_identifier(), StudyRootQueryRetrieveInformationModelGet)
            ),
            "worklist": _last_status(
                assoc.send_c_find(_worklist_identifier(), ModalityWorklistInformationFind)
            ),
        }
    finally:
        assoc.release()


async def test_role_dimse_service_matrix(dimse_matrix: DimseMatrix) -> None:
    failures = []
    for role, allowed in EXPECTED_DIMSE.items():
        calling = _dimse_ae_title(role)
        outcomes = await asyncio.to_thread(_dimse_outcomes, dimse_matrix, calling)
        for service in DIMSE_SERVICES:
            status, comment = outcomes[service]
            refused = status == NOT_AUTHORIZED
            if refused == (service in allowed):
                verdict = "refused" if refused else f"let through (status {status:#06x})"
                failures.append(f"{role or 'unlisted'} AE {service}: {verdict}")
            if refused and calling not in comment:
                failures.append(f"{role or 'unlisted'} AE {service}: no reason ({comment!r})")
            if not refused and service in allowed and status not in (0x0000, 0xB000):
                failures.append(f"{role or 'unlisted'} AE {service}: status {status:#06x}")
    assert not failures, "\n".join(failures)
