"""Malformed input is a 400 with a reason on every route of the hub, never a 500.

The route list comes from the application's own router, so a new route is fuzzed as soon as it
exists. An exception no handler expected is a counted RFC 9457 problem document.
"""

from __future__ import annotations

import json
import re

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hubtest import HubServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_security_matrix import route_table

from hub import errors

BEYOND_64_BITS = str(2**64 + 1)
DEEP_JSON = b"[" * 20_000 + b"]" * 20_000
JSON = {"Content-Type": "application/json"}

# (method, path, body or None, content type): the shapes that answered 500 before.
SHAPES = [
    ("POST", "/api/login", DEEP_JSON, "application/json"),
    ("POST", "/api/login", b'{"username": "a", "password": "b"}', "application/json; charset=ebcdic"),
    ("POST", "/api/worklist", b'{"patient_name": 5, "patient_id": "x", "modality": "US"}', "application/json"),
    ("POST", "/api/worklist", b'{"patient_name": "a", "patient_id": "b", "modality": "US", "requested_procedure_codes": 5}', "application/json"),
    ("POST", "/api/worklist", b'{"patient_name": "a", "patient_id": "b", "modality": "US", "sex": true}', "application/json"),
    ("GET", f"/api/worklist?limit={BEYOND_64_BITS}", None, None),
    ("GET", f"/dicomweb/studies?offset={BEYOND_64_BITS}", None, None),
    ("GET", f"/dicomweb/series?SeriesNumber={BEYOND_64_BITS}", None, None),
    ("GET", f"/dicomweb/instances?InstanceNumber={BEYOND_64_BITS}", None, None),
    ("DELETE", f"/api/admin/tokens/{BEYOND_64_BITS}", None, None),
    ("POST", "/api/uploads", b'{"filename": "a.svs", "size": 1e400}', "application/json"),
    ("POST", "/api/uploads", b'{"filename": "a.svs", "size": ' + BEYOND_64_BITS.encode() + b"}", "application/json"),
    ("POST", "/api/admin/users", b'{"username": "x", "role": "clinic", "password": 5}', "application/json"),
    ("POST", "/api/admin/tokens", b'{"username": "test-admin", "days": 1e308}', "application/json"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "ctype"), SHAPES)
async def test_known_malformed_shapes_are_400_with_a_reason(
    hub_server: HubServer, method, path, body, ctype
) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    async with (
        hub_server.session() as session,
        session.request(method, hub_server.url + path, data=body, headers=headers) as resp,
    ):
        text = await resp.text()
        assert resp.status == 400, (resp.status, text[:300])
        answer = json.loads(text)
        assert answer["status"] == 400 and answer["detail"], answer


async def test_a_rendered_quality_that_is_not_a_number_is_400(hub_server: HubServer) -> None:
    from pydicom.data import get_testdata_file

    from hub.archive import Source

    result = await hub_server.archive.ingest_file(
        get_testdata_file("CT_small.dcm"), source=Source(door="import")
    )
    url = (
        f"{hub_server.url}/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}/rendered?quality=abc"
    )
    async with hub_server.session() as session, session.get(url) as resp:
        assert resp.status == 400
        assert "quality" in (await resp.json())["detail"]


async def test_a_chunked_body_over_the_small_limit_is_refused(hub_server: HubServer) -> None:
    """The 64 KiB limit of login and API bodies holds for bodies that declare no length."""

    async def chunks():
        yield b'{"username": "admin", "password": "'
        for _ in range(900):
            yield b"x" * 1000
        yield b'"}'

    async with (
        aiohttp.ClientSession() as session,
        session.post(hub_server.url + "/api/login", data=chunks(), headers=JSON) as resp,
    ):
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert resp.status == 413
        assert "65536" in (await resp.json())["detail"]


# -- fuzzing every route ---------------------------------------------------------------------

HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64 + 1, 10**30])
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | HUGE_INTS
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=10,
)
FIELD_NAMES = st.sampled_from(
    ["username", "password", "filename", "size", "patient_name", "patient_id", "modality",
     "worklist_item", "days", "scopes", "services", "annotations", "disabled", "start", "sex",
     "requested_procedure_codes", "weight_kg", "role", "label", "code"]
)  # fmt: skip
BODIES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([DEEP_JSON, b"1e400", b'{"size": 1e400}', b"\xff\xfe", b"{" * 50]),
)
QUERY_VALUES = st.one_of(
    st.sampled_from(["abc", "-1", "1e400", BEYOND_64_BITS, "", "1,1,1", "%00", "9" * 5000]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12),
)
QUERY_NAMES = st.sampled_from(
    ["limit", "offset", "quality", "viewport", "SeriesNumber", "InstanceNumber", "since", "status",
     "date", "user", "includefield", "fuzzymatching", "PatientID", "StudyDate"]
)  # fmt: skip
PATH_VALUES = st.sampled_from(["1", BEYOND_64_BITS, "-5", "abc", "1,1,1", "0"])
CHARSETS = st.sampled_from(["", "; charset=utf-8", "; charset=ebcdic", "; charset=latin-1"])
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SKIPPED = frozenset({"public.logout"})  # would end the session the walk signs in with


def _fill(path: str, value: str) -> str:
    return re.sub(r"/1(?=/|$)", "/" + value, path)


@pytest.mark.timeout(900)
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=BODIES,
    query=st.dictionaries(QUERY_NAMES, QUERY_VALUES, min_size=1, max_size=3),
    path_value=PATH_VALUES,
    charset=CHARSETS,
)
async def test_no_route_answers_500_to_hostile_input(
    hub_server: HubServer, body, query, path_value, charset
) -> None:
    failures = []
    timeout = aiohttp.ClientTimeout(total=60)
    async with hub_server.session(timeout=timeout) as session:
        for method, path, name in route_table(hub_server.app):
            if name in SKIPPED or "static" in (name or "") or name.endswith(".ws"):
                continue
            url = hub_server.url + _fill(path, path_value)
            if method in WRITES:
                headers = {"Content-Type": "application/json" + charset}
                request = session.request(method, url, data=body, headers=headers)
            else:
                request = session.request(method, url, params=query)
            async with request as resp:
                if resp.status >= 500:
                    failures.append(f"{method} {url} -> {resp.status}: {(await resp.text())[:200]}")
    assert not failures, "\n".join(failures)
    assert hub_server.app[errors.ERRORS_KEY].total == 0


async def test_an_unexpected_exception_is_a_counted_problem_document() -> None:
    async def broken(request: web.Request) -> web.Response:
        raise KeyError("internal detail that must not leak")

    app = web.Application()
    errors.install(app)
    app.router.add_get("/broken", broken, name="public.broken")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.make_url("/broken")) as resp,
        ):
            assert resp.status == 500
            assert resp.content_type == "application/problem+json"
            body = await resp.json(content_type=None)
        assert body["status"] == 500 and body["title"] == "Internal Server Error"
        assert body["error_id"] in body["detail"]
        assert "internal detail" not in json.dumps(body) and "Traceback" not in json.dumps(body)
        assert app[errors.ERRORS_KEY].by_route["public.broken"] == 1
    finally:
        await server.close()
