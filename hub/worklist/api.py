"""Worklist REST API (JSON).

GET  /api/worklist                      list; query: status (comma list), modality, station_ae,
                                        date (DICOM date or range), patient_name (wildcards),
                                        patient_id, accession, limit
POST /api/worklist                      create; body: NewItem fields -> 201 + item
GET  /api/worklist/{id}                 one item
PATCH /api/worklist/{id}                edit; body: the NewItem fields to change -> item; 409
                                        once the step is completed or cancelled
POST /api/worklist/{id}/start|complete|cancel
                                        status change; 409 when the current status forbids it

Every change made here is audited (worklist.create, .update, .start, .complete, .cancel), an
edit with the values before and after.

A SCHEDULED item becomes STARTED by itself when the first image of its study is stored.
A clinic lists and reads only the items assigned to it (``clinic``: its user name, set by the
administrator who schedules the step) and those it created; others answer 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from hub.apispec import described
from hub.app_keys import ARCHIVE_KEY
from hub.archive.model import Indexed
from hub.archive.query import QueryError
from hub.audited import audit_change
from hub.errors import Problem, problem
from hub.requestdata import BadInput, check_field_types, json_object, parse_int
from hub.security.visibility import worklist_restriction
from hub.worklist import model
from hub.worklist.clinics import check_clinic
from hub.worklist.model import (
    ItemEdit,
    NewItem,
    TransitionError,
    WorklistError,
    WorklistFilter,
    WorklistItem,
)

FILTER_PARAMS = ("modality", "station_ae", "patient_name", "patient_id", "accession")


def _engine(request: web.Request):
    return request.app[ARCHIVE_KEY].engine


def _item_id(request: web.Request) -> int:
    try:
        return parse_int(request.match_info["id"], "id")
    except BadInput:
        raise Problem(404, "no such worklist item") from None


def filter_from_params(params) -> WorklistFilter:
    flt = WorklistFilter(**{k: params.get(k, "") for k in FILTER_PARAMS})
    flt.start_date = params.get("date", "")
    if statuses := params.get("status", ""):
        flt.statuses = tuple(s.strip().upper() for s in statuses.split(",") if s.strip())
        unknown = set(flt.statuses) - set(model.STATUSES)
        if unknown:
            raise WorklistError(f"unknown status: {', '.join(sorted(unknown))}")
    if limit := params.get("limit"):
        flt.limit = parse_int(limit, "limit", minimum=1)
    return flt


def _visible(request: web.Request):
    """The caller's worklist limit (None: everything; also in an app without the gate)."""
    who = request.get("principal")
    return worklist_restriction(who) if who is not None else None


@described(
    "Scheduled procedure steps, soonest first",
    query={
        "status": "comma-separated statuses (SCHEDULED, STARTED, COMPLETED, CANCELLED)",
        "modality": "the modality of the step",
        "station_ae": "the AE title of the station it is scheduled on",
        "date": "a DICOM date or date range (YYYYMMDD-YYYYMMDD)",
        "patient_name": "the patient's name; * and ? are wildcards",
        "patient_id": "the patient's ID",
        "accession": "the accession number",
        "limit": "at most this many items",
    },
)
async def list_items(request: web.Request) -> web.Response:
    try:
        flt = filter_from_params(request.query)
        if (restriction := _visible(request)) is not None:
            flt.restrict.append(restriction)
        items = await model.search(_engine(request), flt)
    except (WorklistError, QueryError) as exc:
        return problem(400, str(exc))
    return web.json_response({"items": [i.to_json() for i in items]})


@described("Schedule a procedure step", body=NewItem, status=201)
async def create_item(request: web.Request) -> web.Response:
    body = await json_object(request)
    check_field_types(body, NewItem)
    who = request.get("principal")
    try:
        new = NewItem.from_json(body)
        await check_clinic(_engine(request), new.clinic)
        item = await model.create(_engine(request), new, who.user if who else None)
    except WorklistError as exc:
        return problem(400, str(exc))
    await _audit(request, "worklist.create", item, {"id": item.id})
    return web.json_response(
        item.to_json(), status=201, headers={"Location": f"/api/worklist/{item.id}"}
    )


@described(
    "Change fields of a scheduled or started step",
    body=ItemEdit,
    answers={404: "no such worklist item", 409: "the step is completed or cancelled"},
)
async def edit_item(request: web.Request) -> web.Response:
    body = await json_object(request)
    check_field_types(body, ItemEdit)
    try:
        if "clinic" in body:
            await check_clinic(_engine(request), body["clinic"])
        before, after = await model.edit(
            _engine(request), _item_id(request), body, _visible(request)
        )
    except KeyError:
        return problem(404, "no such worklist item")
    except WorklistError as exc:
        return problem(400, str(exc))
    except TransitionError as exc:
        return problem(409, str(exc))
    old, new = before.to_json(), after.to_json()
    changed = sorted(k for k in new if k != "updated_at" and old[k] != new[k])
    detail = {
        "id": after.id,
        "old": {k: old[k] for k in changed},
        "new": {k: new[k] for k in changed},
    }
    await _audit(request, "worklist.update", after, detail)
    return web.json_response(new)


@described("One scheduled procedure step", answers={404: "no such worklist item"})
async def get_item(request: web.Request) -> web.Response:
    item = await model.get_item(_engine(request), _item_id(request), _visible(request))
    if item is None:
        return problem(404, "no such worklist item")
    return web.json_response(item.to_json())


def _transition(action: str):
    @described(
        f"Move the step to {model.TRANSITIONS[action][1]}",
        answers={404: "no such worklist item", 409: "the step's status does not allow it"},
    )
    async def handler(request: web.Request) -> web.Response:
        try:
            item = await model.transition(_engine(request), _item_id(request), action)
        except KeyError:
            return problem(404, "no such worklist item")
        except TransitionError as exc:
            return problem(409, str(exc))
        await _audit(request, f"worklist.{action}", item, {"id": item.id, "status": item.status})
        return web.json_response(item.to_json())

    handler.__name__ = f"{action}_item"
    return handler


async def _audit(request: web.Request, action: str, item: WorklistItem, detail: dict) -> None:
    await audit_change(
        request,
        _engine(request),
        action,
        patient=item.patient_id,
        study=item.study_uid,
        detail=detail,
    )


async def _start_steps_on_first_image(app: web.Application) -> AsyncIterator[None]:
    archive = app[ARCHIVE_KEY]

    async def start_on_first_image(event: Indexed) -> None:
        if event.status == "stored":
            await model.start_for_study(archive.engine, event.study_uid)

    archive.subscribe(start_on_first_image)
    yield


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_start_steps_on_first_image)
    r = app.router
    r.add_get("/api/worklist", list_items, name="worklist.read.items")
    r.add_post("/api/worklist", create_item, name="worklist.write.item")
    r.add_get("/api/worklist/{id}", get_item, name="worklist.read.item")
    r.add_patch("/api/worklist/{id}", edit_item, name="worklist.write.edit")
    for action in model.TRANSITIONS:
        r.add_post(
            f"/api/worklist/{{id}}/{action}", _transition(action), name=f"worklist.write.{action}"
        )
