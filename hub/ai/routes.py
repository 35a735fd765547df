"""``/api/ai``: run a model on a slide, and the provenance of what models reported.

POST /api/ai/analyses            ``{"study", "series", "image", "model"}``: run the model now;
                                 answers the stored annotations' and report's SOP UIDs
GET  /api/ai/models              the models this hub runs
GET  /api/ai/provenance/{sop}    a report and the reports it replaced, newest first
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from hub.ai.analyses import Analyser
from hub.ai.model import AnalysisError
from hub.ai.provenance import NotAReport, chain
from hub.apispec import described
from hub.archive import Source
from hub.errors import Problem, problem
from hub.requestdata import json_model
from hub.security import actor_of
from hub.security.visibility import request_scope

ANALYSER_KEY: web.AppKey[Analyser] = web.AppKey("ai_analyser", Analyser)
Uid = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")]


class NewAnalysis(msgspec.Struct, forbid_unknown_fields=True):
    study: Uid  # Study Instance UID
    series: Uid  # the slide's Series Instance UID
    image: Uid  # SOP Instance UID of a level of the slide
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]  # a name from /api/ai/models


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/ai/analyses", run_analysis, name="ai.run.analysis")
    r.add_get("/api/ai/models", list_models, name="ai.read.models")
    r.add_get("/api/ai/provenance/{sop}", provenance, name="ai.read.provenance")


@described(
    "Run a model on a slide now; its annotations and measurement report are stored in the study",
    body=NewAnalysis,
    status=201,
    answers={
        400: "the image is not a level of a whole-slide image",
        404: "no such model, or no such image the caller may read",
        422: "the slide cannot be read (no pixel spacing, pixels that do not decode)",
        502: "the model failed or answered something that cannot be stored; nothing was stored",
    },
)
async def run_analysis(request: web.Request) -> web.Response:
    body = await json_model(request, NewAnalysis)
    principal = request["principal"]
    source = Source(door="ai", actor=actor_of(principal), scope=request_scope(request))
    try:
        done = await request.app[ANALYSER_KEY].run(
            body.study, body.series, body.image, body.model, source
        )
    except AnalysisError as exc:
        return problem(exc.status, exc.reason)
    payload = {
        "model": done.model,
        "version": done.version,
        "study_uid": done.study_uid,
        "image_uid": done.image_uid,
        "annotations_uid": done.annotations_uid,
        "report_uid": done.report_uid,
        "replaces": done.replaces,
        "measurements": dict(done.measurements),
    }
    return web.json_response(payload, status=201)


@described("The models this hub runs: name, version, family and parameters")
async def list_models(request: web.Request) -> web.Response:
    models = [
        {
            "name": m.name,
            "version": m.version,
            "family": m.family.meaning,
            "parameters": dict(m.parameters),
        }
        for m in request.app[ANALYSER_KEY].models.values()
    ]
    return web.json_response({"models": models})


@described(
    "The provenance chain of an AI measurement report: it and each report it replaced, newest "
    "first, with model, version, date and verification status",
    answers={404: "no AI measurement report with this SOP Instance UID the caller may read"},
)
async def provenance(request: web.Request) -> web.Response:
    archive = request.app[ANALYSER_KEY].archive
    try:
        answer = await chain(archive, request.match_info["sop"], request_scope(request))
    except NotAReport as exc:
        raise Problem(404, str(exc)) from None
    return web.json_response(answer)
