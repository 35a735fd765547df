"""QIDO-RS (PS3.18 10.6): the six search routes over the shared matching engine."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub.app_keys import ARCHIVE_KEY
from hub.archive.attributes import tag_of
from hub.archive.query import Level, Query, QueryError
from hub.dicomweb.responses import WARNING_TRUNCATED, base_url, dicom_json, element, problem
from hub.security.visibility import request_scope

CONTROL = {"includefield", "fuzzymatching", "limit", "offset"}


def parse_query(request: web.Request, level: Level) -> Query:
    params = request.rel_url.query
    keys: dict[str, str] = {}
    include: set[str] | str = set()
    for name, value in params.items():
        if name == "includefield":
            include = _include(value, include)
        elif name not in CONTROL:
            keys[name] = value
    fuzzy = params.get("fuzzymatching", "false").lower()
    if fuzzy not in ("true", "false"):
        raise QueryError("fuzzymatching must be true or false")
    return Query(
        level=level,
        keys=keys,
        study_uid=request.match_info.get("study"),
        series_uid=request.match_info.get("series"),
        fuzzy=fuzzy == "true",
        include=include,
        limit=_non_negative(params.get("limit"), "limit"),
        offset=_non_negative(params.get("offset"), "offset") or 0,
        scope=request_scope(request),
    )


def _include(value: str, current: set[str] | str) -> set[str] | str:
    if current == "all":
        return current
    fields = set(current)
    for item in value.replace(",", " ").split():
        if item == "all":
            return "all"
        tag = tag_of(item)
        if tag is None:
            raise QueryError(f"includefield {item!r} is not a DICOM keyword or tag")
        fields.add(tag)
    return fields


def _non_negative(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError as exc:
        raise QueryError(f"{name} must be an integer") from exc
    if number < 0:
        raise QueryError(f"{name} must not be negative")
    return number


def _search(level: Level):
    async def handler(request: web.Request) -> web.Response:
        archive = request.app[ARCHIVE_KEY]
        try:
            q = parse_query(request, level)
        except QueryError as exc:
            return problem(400, str(exc))
        try:
            page = await archive.search_page(q)
        except QueryError as exc:
            return problem(400, str(exc))
        base = base_url(request)
        rows = [_with_url(base, level, row) for row in page.rows]
        headers = {"Warning": WARNING_TRUNCATED} if page.truncated else None
        return dicom_json(rows, headers=headers)

    return handler


def _with_url(base: str, level: Level, row: dict[str, Any]) -> dict[str, Any]:
    study = _first(row, "0020000D")
    if level == "STUDY":
        row["00081190"] = element("UR", f"{base}/studies/{study}")
    elif level == "SERIES":
        row["00081190"] = element("UR", f"{base}/studies/{study}/series/{_first(row, '0020000E')}")
    elif level == "INSTANCE":
        url = f"{base}/studies/{study}/series/{_first(row, '0020000E')}/instances/{_first(row, '00080018')}"
        row["00081190"] = element("UR", url)
    return dict(sorted(row.items()))


def _first(row: dict[str, Any], tag: str) -> str:
    return (row.get(tag) or {}).get("Value", [""])[0]


search_studies = _search("STUDY")
search_series = _search("SERIES")
search_instances = _search("INSTANCE")
