"""Dose registry JSON API (permission ``dose.read``).

GET /api/dose/patients                      resolved patients (``?excluded=1``: QA subjects too)
GET /api/dose/patients/{id}                 a profile; ``?at=YYYYMMDD``: windows end that day
GET /api/dose/patients/{id}/events.csv      the patient's events and estimates as CSV
GET /api/dose/studies/{study}               a study's events, union over all its reports
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from aiohttp import web

from hub.dose.profile import Profiles
from hub.requestdata import BadInput, parse_int

PROFILES_KEY: web.AppKey[Profiles] = web.AppKey("dose_profiles")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/dose/patients", list_patients, name="dose.read.patients")
    r.add_get("/api/dose/patients/{id}", get_profile, name="dose.read.profile")
    r.add_get("/api/dose/patients/{id}/events.csv", get_events_csv, name="dose.read.events")
    r.add_get("/api/dose/studies/{study}", get_study, name="dose.read.study")


def _not_found(what: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(
        text=json.dumps({"error": f"no such {what}"}), content_type="application/json"
    )


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


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
        raise _bad("at must be a date as YYYYMMDD") from None


async def list_patients(request: web.Request) -> web.Response:
    excluded = request.query.get("excluded", "") in ("1", "true", "yes")
    patients = await request.app[PROFILES_KEY].patients(include_excluded=excluded)
    return web.json_response({"patients": patients})


async def get_profile(request: web.Request) -> web.Response:
    at = _at(request)
    profile = await request.app[PROFILES_KEY].profile(_identity_id(request), at)
    if profile is None:
        raise _not_found("patient")
    return web.json_response(profile)


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


async def get_study(request: web.Request) -> web.Response:
    study = await request.app[PROFILES_KEY].study(request.match_info["study"])
    if study is None:
        raise _not_found("dose study")
    return web.json_response(study)
