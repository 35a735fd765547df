"""HTTP routes for resumable uploads and job progress (JSON, polling and server-sent events)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import msgspec
from aiohttp import web

from hub.apispec import described
from hub.app_keys import ARCHIVE_KEY
from hub.errors import problem
from hub.jobs.keys import JOBS_KEY, UPLOADS_KEY
from hub.jobs.runner import JobNotFound
from hub.jobs.uploads import ID_FIELDS, Upload, UploadError
from hub.requestdata import INT64_MAX, BadInput, json_int, json_model, parse_int
from hub.security.visibility import worklist_restriction
from hub.worklist import model as worklist

KEEP_ALIVE_SECONDS = 15.0  # a comment line on a quiet stream keeps proxies from closing it
SEE_ALL_ROLES = ("admin", "pathologist")

# A slide upload: the file's name and size, the worklist item it is for (whose patient and order
# identifiers win), or those identifiers typed in.
NewUpload = msgspec.defstruct(
    "NewUpload",
    [
        ("filename", Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]),
        ("size", Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]),
        ("worklist_item", int | str | None, None),
        *((name, str | None, None) for name in ID_FIELDS),
    ],
)
UPLOAD_NOT_FOUND = {404: "no such upload"}
JOB_NOT_FOUND = {404: "no such job"}


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/uploads", create_upload, name="slides.upload.create")
    r.add_get("/api/uploads/{id}", upload_status, name="slides.upload.status")
    r.add_put("/api/uploads/{id}", upload_chunk, name="slides.upload.chunk")
    r.add_post("/api/uploads/{id}/complete", complete_upload, name="slides.upload.complete")
    r.add_delete("/api/uploads/{id}", discard_upload, name="slides.upload.discard")
    r.add_get("/api/jobs", list_jobs, name="jobs.read.list")
    r.add_get("/api/jobs/{id}", job_status, name="jobs.read.status")
    r.add_get("/api/jobs/{id}/events", job_events, name="jobs.read.events")


@web.middleware
async def upload_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except UploadError as exc:
        return problem(exc.status, exc.message, **exc.extra)
    except JobNotFound as exc:
        return problem(404, f"no job {exc}")


def actor_of(request: web.Request) -> str | None:
    """The caller's identity, as every door records it (None without the security package)."""
    from hub.security import actor_of as principal_actor

    return principal_actor(request.get("principal"))


def may_see(request: web.Request, owner: str | None) -> bool:
    """Uploads and jobs are visible to whoever started them, and to admins and pathologists."""
    principal = request.get("principal")
    if principal is None:  # no security package in this application
        return True
    return getattr(principal, "role", None) in SEE_ALL_ROLES or principal.user == owner


async def own_upload(request: web.Request) -> Upload:
    upload = await request.app[UPLOADS_KEY].get(request.match_info["id"])
    if not may_see(request, upload.actor):
        raise UploadError(404, f"no upload {upload.id}")
    return upload


async def visible_job(request: web.Request) -> dict:
    job = await request.app[JOBS_KEY].get(request.match_info["id"])
    if not may_see(request, job["actor"]):
        raise JobNotFound(job["id"])
    return job


@described(
    "Start a resumable slide upload; send its bytes with PUT, then complete it",
    body=NewUpload,
    status=201,
    answers={413: "the file is larger than allowed", 429: "too many uploads open"},
)
async def create_upload(request: web.Request) -> web.Response:
    body = await json_model(request, NewUpload)
    fields = {k: getattr(body, k) for k in ID_FIELDS}
    if body.worklist_item not in (None, ""):
        fields.update(await worklist_fields(request, body.worklist_item))
    uploads = request.app[UPLOADS_KEY]
    upload = await uploads.create(body.filename, body.size, fields, actor_of(request))
    return web.json_response(upload.as_json(), status=201)


async def worklist_fields(request: web.Request, item_id: object) -> dict:
    """Patient and order identifiers of a worklist item; they win over typed-in values."""
    number = _item_number(item_id)
    item = None
    if number is not None:
        who = request.get("principal")
        limit = worklist_restriction(who) if who is not None else None
        item = await worklist.get_item(request.app[ARCHIVE_KEY].engine, number, limit)
    if item is None:
        raise UploadError(400, f"no worklist item {item_id}")
    values = {
        "patient_id": item.patient_id,
        "patient_name": item.patient_name,
        "patient_birth_date": item.birth_date,
        "patient_sex": item.sex,
        "accession": item.accession,
        "study_uid": item.study_uid,
        "study_description": item.requested_procedure_description,
        "referring_physician": item.referring_physician,
    }
    return {k: v for k, v in values.items() if v}


def _item_number(item_id: object) -> int | None:
    try:
        if isinstance(item_id, str):
            return parse_int(item_id, "worklist_item")
        return json_int(item_id, "worklist_item")
    except BadInput:
        return None


@described("How much of an upload has arrived", answers=UPLOAD_NOT_FOUND)
async def upload_status(request: web.Request) -> web.Response:
    upload = await own_upload(request)
    return web.json_response(upload.as_json(), headers={"Cache-Control": "no-store"})


@described(
    "Write the request body into the upload at the given offset",
    query={"offset": "where the bytes go, in bytes from the start (required)"},
    answers={**UPLOAD_NOT_FOUND, 409: "the offset is not where the upload stands"},
)
async def upload_chunk(request: web.Request) -> web.Response:
    if "offset" not in request.query:
        raise UploadError(400, "query parameter offset (bytes) is required")
    offset = parse_int(request.query["offset"], "offset")
    upload = await own_upload(request)
    upload = await request.app[UPLOADS_KEY].write_chunk(upload.id, offset, request.content)
    return web.json_response(upload.as_json())


@described(
    "Finish an upload and start its conversion job",
    status=202,
    answers={**UPLOAD_NOT_FOUND, 409: "bytes are still missing"},
)
async def complete_upload(request: web.Request) -> web.Response:
    upload = await own_upload(request)
    upload = await request.app[UPLOADS_KEY].mark_complete(upload.id)
    job = await request.app[JOBS_KEY].submit(upload)
    return web.json_response(
        {"upload": upload.as_json(), "job": job},
        status=202,
        headers={"Location": str(request.app.router["jobs.read.status"].url_for(id=job["id"]))},
    )


@described("Abandon an upload and delete what arrived", status=204, answers=UPLOAD_NOT_FOUND)
async def discard_upload(request: web.Request) -> web.Response:
    upload = await own_upload(request)
    await request.app[UPLOADS_KEY].discard(upload.id)
    return web.Response(status=204)


@described("The caller's recent jobs (everyone's for admins and pathologists)")
async def list_jobs(request: web.Request) -> web.Response:
    recent = [j for j in await request.app[JOBS_KEY].recent() if may_see(request, j["actor"])]
    return web.json_response({"jobs": recent}, headers={"Cache-Control": "no-store"})


@described("One job: its state and progress", answers=JOB_NOT_FOUND)
async def job_status(request: web.Request) -> web.Response:
    job = await visible_job(request)
    return web.json_response(job, headers={"Cache-Control": "no-store"})


@described(
    "The job's state on every change until it finishes, as server-sent events",
    produces="text/event-stream",
    answers=JOB_NOT_FOUND,
)
async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the job's state on every change, until it is finished. A job another
    node runs is followed through its row in the index."""
    runner = request.app[JOBS_KEY]
    job = await visible_job(request)
    job_id = job["id"]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    clock = asyncio.get_running_loop().time
    last, quiet_since = None, clock()
    try:
        while True:
            if job != last:
                await response.write(f"event: progress\ndata: {json.dumps(job)}\n\n".encode())
                last, quiet_since = job, clock()
            elif clock() - quiet_since >= KEEP_ALIVE_SECONDS:
                await response.write(b": keep-alive\n\n")
                quiet_since = clock()
            if job["finished"]:
                break
            await runner.wait_change(job_id, KEEP_ALIVE_SECONDS - (clock() - quiet_since))
            job = await runner.get(job_id)
        await response.write_eof()
    except ConnectionResetError:  # the browser went away; the job goes on
        pass
    return response
