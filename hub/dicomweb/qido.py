"""QIDO-RS (PS3.18 10.6): the six search routes over the shared matching engine."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydicom.datadict import keyword_for_tag

from hub.app_keys import ARCHIVE_KEY
from hub.archive import query
from hub.archive.attributes import PATIENT_TAGS, SERIES_TAGS, STUDY_TAGS, tag_of
from hub.archive.query import KEYS, TAG_TO_KEYWORD, Level, Query, QueryError
from hub.dicomweb.responses import (
    WARNING_TRUNCATED,
    base_url,
    dicom_json,
    element,
    problem,
    warning,
)
from hub.requestdata import BadInput, parse_int
from hub.security.visibility import request_scope

CONTROL = {"includefield", "fuzzymatching", "limit", "offset"}
LIST_KINDS = {"cs", "uid", "multi"}
RETRIEVE_URL = "00081190"
# What a study or series result can hold (PS3.18 10.6.3.3: attributes of that level and the
# levels above); an instance result can hold any attribute of the instance.
RETURNED: dict[str, set[str]] = {
    "STUDY": {
        *PATIENT_TAGS,
        *STUDY_TAGS,
        query.MODALITIES_IN_STUDY,
        query.NUMBER_OF_STUDY_RELATED_SERIES,
        query.NUMBER_OF_STUDY_RELATED_INSTANCES,
        RETRIEVE_URL,
    },
    "SERIES": {
        *PATIENT_TAGS,
        *STUDY_TAGS,
        *SERIES_TAGS,
        query.NUMBER_OF_SERIES_RELATED_INSTANCES,
        RETRIEVE_URL,
    },
}


def parse_query(request: web.Request, level: Level) -> Query:
    params = request.rel_url.query
    keys: dict[str, str] = {}
    include: set[str] | str = set()
    for name in dict.fromkeys(params):
        if name == "includefield":
            for value in params.getall(name):
                include = _include(value, include)
        elif name not in CONTROL:
            keys[name] = _matching_value(name, params.getall(name))
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


def _matching_value(name: str, values: list[str]) -> str:
    """A key's value; a key given more than once (as dicomweb-client and requests encode a
    Python list) lists its values, for the keys whose values can be listed."""
    if len(values) == 1:
        return values[0]
    key = KEYS.get(TAG_TO_KEYWORD.get(tag_of(name) or "", name))
    if key is None or key.kind not in LIST_KINDS:
        raise QueryError(f"{name} is given {len(values)} times; it takes one value")
    return "\\".join(values)


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
        return parse_int(value, name)
    except BadInput as exc:
        raise QueryError(exc.reason_text) from None


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
        warnings = [WARNING_TRUNCATED] if page.truncated else []
        if ignored := _not_returned(q):
            warnings.append(warning(f"includefield {ignored} not returned at {level} level"))
        headers = {"Warning": ", ".join(warnings)} if warnings else None
        return dicom_json(rows, headers=headers)

    return handler


def _not_returned(q: Query) -> str:
    """The includefield attributes a result at this level cannot hold (a series attribute at
    study level, an instance attribute at series level), named; "" when there are none."""
    returned = RETURNED.get(q.level)
    if returned is None or q.include == "all":
        return ""
    ignored = sorted(tag for tag in q.include if tag not in returned)
    return ", ".join(f"{tag} ({keyword_for_tag(int(tag, 16)) or 'private'})" for tag in ignored)


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
