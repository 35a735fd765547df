"""Dose registry JSON API (permission ``dose.read``).

GET /api/dose/patients                      resolved patients (``?excluded=1``: QA subjects too)
GET /api/dose/patients/{id}                 a profile; ``?at=YYYYMMDD``: windows end that day
GET /api/dose/patients/{id}/events.csv      the patient's events and estimates as CSV
GET /api/dose/studies/{study}               a study's events, union over all its reports

Permission ``dose.admin`` (audited):
POST /api/dose/patients/{id}/link           ``{"into": other id}``: one person after all
POST /api/dose/patients/{id}/split          ``{"studies": [uid, ...]}``: those studies are
                                            another person's; answers the new identity
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

import msgspec
from aiohttp import web

from hub.apispec import described
from hub.audited import audit_change
from hub.dose import identity
from hub.dose.profile import Profiles
from hub.errors import Problem, problem
from hub.requestdata import INT64_MAX, BadInput, json_model, parse_int

PROFILES_KEY: web.AppKey[Profiles] = web.AppKey("dose_profiles")


class LinkInto(msgspec.Struct, forbid_unknown_fields=True):
    into: Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]  # the identity this one joins


class SplitOff(msgspec.Struct, forbid_unknown_fields=True):
    studies: list[str]  # Study Instance UIDs that belong to another person


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/dose/patients", list_patients, name="dose.read.patients")
    r.add_get("/api/dose/patients/{id}", get_profile, name="dose.read.profile")
    r.add_get("/api/dose/patients/{id}/events.csv", get_events_csv, name="dose.read.events")
    r.add_get("/api/dose/studies/{study}", get_study, name="dose.read.study")
    r.add_post("/api/dose/patients/{id}/link", link_identity, name="dose.admin.link")
    r.add_post("/api/dose/patients/{id}/split", split_identity, name="dose.admin.split")


def _not_found(what: str) -> Problem:
    return Problem(404, f"no such {what}")


def _identity_id(request: web.Request) -> int:
    try:
        return parse_int(request.match_info["id"], "id", minimum=1)
    except BadInput:
        raise _not_found("patient") from None


def _at(request: web.Request) -> date:
    text = request.query.get("at", "")
    if not text:
        return datetime.now(UTC).date()
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise Problem(400, "at must be a date as YYYYMMDD") from None


@described(
    "Patients with dose records",
    query={"excluded": "true to include QA and phantom subjects"},
)
async def list_patients(request: web.Request) -> web.Response:
    excluded = request.query.get("excluded", "") in ("1", "true", "yes")
    patients = await request.app[PROFILES_KEY].patients(include_excluded=excluded)
    return web.json_response({"patients": patients})


@described(
    "A patient's dose profile: events, studies and cumulative effective dose",
    query={"at": "the profile as of this date (YYYYMMDD; today by default)"},
    answers={404: "no such patient"},
)
async def get_profile(request: web.Request) -> web.Response:
    at = _at(request)
    profile = await request.app[PROFILES_KEY].profile(_identity_id(request), at)
    if profile is None:
        raise _not_found("patient")
    return web.json_response(profile)


@described(
    "A patient's irradiation events as CSV", produces="text/csv", answers={404: "no such patient"}
)
async def get_events_csv(request: web.Request) -> web.Response:
    identity_id = _identity_id(request)
    profiles = request.app[PROFILES_KEY]
    if await profiles.profile(identity_id, date.today()) is None:
        raise _not_found("patient")
    return web.Response(
        text=await profiles.events_csv(identity_id),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="dose-events-{identity_id}.csv"'},
    )


@described("The dose of one study: its events, counted once", answers={404: "no such dose study"})
async def get_study(request: web.Request) -> web.Response:
    study = await request.app[PROFILES_KEY].study(request.match_info["study"])
    if study is None:
        raise _not_found("dose study")
    return web.json_response(study)


def _refused(exc: identity.IdentityError) -> web.Response:
    return problem(exc.status, str(exc))


@described(
    "Link this patient identity into another (the same person)",
    body=LinkInto,
    answers={404: "no such patient", 409: "the identities cannot be linked"},
)
async def link_identity(request: web.Request) -> web.Response:
    source_id = _identity_id(request)
    target_id = (await json_model(request, LinkInto)).into
    profiles = request.app[PROFILES_KEY]
    try:
        source = await identity.link(profiles.engine, source_id, target_id)
    except identity.IdentityError as exc:
        return _refused(exc)
    await _audit(
        request, "dose.link", source.patient_id, {"identity": source_id, "into": target_id}
    )
    return web.json_response(await profiles.profile(target_id, datetime.now(UTC).date()))


@described(
    "Split studies off this identity into a new one (another person)",
    body=SplitOff,
    status=201,
    answers={404: "no such patient", 409: "the studies cannot be split off"},
)
async def split_identity(request: web.Request) -> web.Response:
    identity_id = _identity_id(request)
    studies = (await json_model(request, SplitOff)).studies
    profiles = request.app[PROFILES_KEY]
    try:
        new_id = await identity.split(profiles.engine, identity_id, studies)
    except identity.IdentityError as exc:
        return _refused(exc)
    profile = await profiles.profile(new_id, datetime.now(UTC).date())
    assert profile is not None
    detail = {"identity": identity_id, "new_identity": new_id, "studies": studies}
    await _audit(request, "dose.split", profile["identity"]["patient_id"], detail)
    return web.json_response(profile, status=201)


async def _audit(request: web.Request, action: str, patient: str, detail: dict) -> None:
    engine = request.app[PROFILES_KEY].engine
    await audit_change(request, engine, action, patient=patient, detail=detail)
