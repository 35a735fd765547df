"""REST API of patient changes (administrators, ``admin.patients``).

GET  /api/admin/patients/changes             the latest updates and merges, newest first
POST /api/admin/patients/changes/{id}/revert undo one, with the index and worklist as before it

A change is reverted only while no later change of one of its patients stands (409 names it).
"""

from __future__ import annotations

from aiohttp import web

from hub.apispec import described
from hub.app_keys import ARCHIVE_KEY
from hub.audited import audit_change
from hub.errors import problem
from hub.patients import changes
from hub.patients.model import ChangeConflict
from hub.requestdata import parse_int

MAX_LISTED = 1000


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/admin/patients/changes", list_changes, name="admin.patients.changes")
    r.add_post(
        "/api/admin/patients/changes/{id}/revert", revert_change, name="admin.patients.revert"
    )


@described(
    "Patient updates (ADT A08) and merges (A40), newest first, each with what it gave, the "
    "studies and worklist steps it touched, and whether and by whom it was reverted",
    query={
        "patient": "only the changes of this patient ID (as the patient or the prior one)",
        "limit": f"at most this many (1 to {MAX_LISTED}; 200 by default)",
    },
)
async def list_changes(request: web.Request) -> web.Response:
    limit = parse_int(request.query.get("limit", "200"), "limit", minimum=1, maximum=MAX_LISTED)
    engine = request.app[ARCHIVE_KEY].engine
    listed = await changes.listed(engine, request.query.get("patient") or None, limit)
    return web.json_response({"changes": listed}, headers={"Cache-Control": "no-store"})


@described(
    "Revert a patient change: the patients' demographics, the studies a merge moved and the "
    "worklist steps are put back as they were before it",
    answers={404: "no such change", 409: "reverted already, or a later change must go first"},
)
async def revert_change(request: web.Request) -> web.Response:
    change_id = parse_int(request.match_info["id"], "change id", maximum=2**31 - 1)
    engine = request.app[ARCHIVE_KEY].engine
    principal = request.get("principal")
    who = principal.user if principal is not None else "admin"
    try:
        reverted = await changes.revert(engine, change_id, who)
    except LookupError as exc:
        return problem(404, str(exc))
    except ChangeConflict as exc:
        return problem(409, str(exc))
    summary = {
        "id": reverted.id,
        "kind": reverted.kind,
        "patient": reverted.patient.patient_id,
        "prior": reverted.prior.patient_id if reverted.prior else None,
        "studies": reverted.studies,
        "steps": reverted.steps,
    }
    await audit_change(
        request, engine, "patient.revert", patient=reverted.patient.patient_id, detail=summary
    )
    return web.json_response(summary)
