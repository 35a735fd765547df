"""``/api/annotations/{study}?image=SOP``: the annotation sets of one slide, for the viewer.

GET: the newest set of each person who annotated the slide (same frame of reference), shapes in
the pixels of ``image`` (a full-resolution VOLUME instance). POST ``{"annotations": [...]}``:
the caller's set becomes these shapes, stored as a new instance in the caller's annotation
series of that slide through the archive's ingest path; earlier instances stay as history.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from aiohttp import web
from pydicom import Dataset, dcmread

from hub.annotations import model
from hub.apispec import described
from hub.app_keys import ARCHIVE_KEY
from hub.archive import Archive, Source
from hub.archive.errors import NotFound
from hub.archive.model import InstanceRef
from hub.archive.scope import ReadScope
from hub.errors import Problem
from hub.requestdata import json_body
from hub.security import actor_of
from hub.security.visibility import request_scope

VL_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def setup(app: web.Application) -> None:
    app.router.add_get("/api/annotations/{study}", list_sets, name="dicomweb.read.annotations")
    app.router.add_post("/api/annotations/{study}", save_set, name="annotations.write.save")


@described(
    "The annotation sets of a slide the caller may read",
    query={"image": "the SOP Instance UID of the slide's full-resolution image (required)"},
    answers={404: "no such slide image"},
)
async def list_sets(request: web.Request) -> web.Response:
    """Annotations belong to whoever saved them; each set says whether it is the caller's."""
    archive, image = await _image(request)
    me = actor_of(request.get("principal"))
    sets = []
    scope = request_scope(request)
    for ref, ds in await _newest_sets(archive, request.match_info["study"], image, scope):
        shapes = await _run(model.read, ds, image)
        creator = model.creator(ds)
        sets.append(
            {
                "creator": creator,
                "mine": creator == me,
                "sop_uid": ref.sop_instance_uid,
                "series_uid": ref.series_uid,
                "saved_at": model.saved_at(ds).isoformat(),
                "annotations": shapes,
            }
        )
    return web.json_response({"sets": sets})


@described(
    "Save the caller's annotations of a slide as a new version (a DICOM annotation object)",
    status=201,
    query={"image": "the SOP Instance UID of the slide's full-resolution image (required)"},
    answers={404: "no such slide image", 409: "the annotations were not stored"},
)
async def save_set(request: web.Request) -> web.Response:
    principal = request["principal"]
    study = request.match_info["study"]
    archive, image = await _image(request)  # the caller must be able to read the slide
    body = await json_body(request)
    try:
        shapes = model.shapes_from_json(
            body.get("annotations") if isinstance(body, dict) else None,
            int(image.TotalPixelMatrixColumns),
            int(image.TotalPixelMatrixRows),
        )
    except ValueError as exc:  # a bad shape (ShapeError)
        raise Problem(400, str(exc)) from None
    me = actor_of(principal)
    mine = [
        (ref, ds)
        for ref, ds in await _newest_sets(archive, study, image, request_scope(request))
        if model.creator(ds) == me
    ]
    series_uid, number = (
        (mine[0][0].series_uid, int(mine[0][1].InstanceNumber) + 1) if mine else (None, 1)
    )
    try:
        data = await _run(_encoded, image, shapes, me, series_uid, number)
    except ValueError as exc:  # highdicom's own checks of the graphic data
        raise Problem(400, f"cannot store these annotations: {exc}") from None
    source = Source(door="annotations", actor=me, scope=request_scope(request))
    result = await archive.ingest_bytes(data, source=source)
    if not result.ok:
        raise Problem(409, result.message or "the annotations were not stored")
    payload = {
        "sop_uid": result.sop_instance_uid,
        "series_uid": result.series_uid,
        "count": len(shapes),
    }
    return web.json_response(payload, status=201)


async def _image(request: web.Request) -> tuple[Archive, Dataset]:
    """The archive and the header of ``?image=``, a full-resolution slide image of the study."""
    archive = request.app[ARCHIVE_KEY]
    sop = request.query.get("image", "")
    scope = request_scope(request)
    try:
        study = request.match_info["study"]
        refs = await archive.instances(study, sop_uid=sop, scope=scope) if sop else []
    except NotFound:
        refs = []
    if not refs:
        raise Problem(404, "no such slide image in this study (?image=SOP UID)")
    ref = refs[0]
    if ref.sop_class_uid != VL_WSI:
        raise Problem(400, "?image= must be a VL Whole Slide Microscopy image")
    header = await _on_file(archive, ref, _header)
    if "TotalPixelMatrixColumns" not in header:
        raise Problem(400, "?image= has no total pixel matrix")
    return archive, header


async def _newest_sets(
    archive: Archive, study: str, image: Dataset, scope: ReadScope
) -> list[tuple[InstanceRef, Dataset]]:
    """The newest annotation instance of each creator on this slide, newest first.

    Each save is a new instance in the creator's series, so only the latest instance of each
    series (the highest index id: the last ingested) is read, however long the history.
    """
    latest: dict[str, InstanceRef] = {}
    for ref in await archive.instances(study, scope=scope):
        if ref.sop_class_uid == model.ANN_SOP_CLASS and ref.id > getattr(
            latest.get(ref.series_uid), "id", -1
        ):
            latest[ref.series_uid] = ref
    stored = [(r, await _on_file(archive, r, dcmread)) for r in latest.values()]
    slide = image.FrameOfReferenceUID
    newest: dict[str, tuple[InstanceRef, Dataset]] = {}
    for ref, ds in sorted(stored, key=lambda rd: (model.saved_at(rd[1]), rd[1].InstanceNumber)):
        if ds.get("FrameOfReferenceUID") == slide:
            newest[model.creator(ds)] = (ref, ds)
    return sorted(newest.values(), key=lambda rd: model.saved_at(rd[1]), reverse=True)


async def _on_file(archive: Archive, ref: InstanceRef, fn, *args: Any) -> Any:
    """fn(path, *args) in an executor on a file of the object's plain bytes."""
    async with archive.store.materialize(ref.sha256) as path:
        return await _run(fn, path, *args)


def _header(path: Path) -> Dataset:
    return dcmread(path, stop_before_pixels=True)


def _encoded(image: Dataset, shapes, creator: str, series_uid: str | None, number: int) -> bytes:
    buffer = io.BytesIO()
    model.build(image, shapes, creator, series_uid, number).save_as(
        buffer, enforce_file_format=True
    )
    return buffer.getvalue()


async def _run(function, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)
