"""Fuzzing the gate and the login API: odd credentials and bodies never cause a 5xx."""

from __future__ import annotations

import json

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_support import Gate

HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
LOGIN_BODIES = st.one_of(
    st.binary(max_size=600),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"username": JSON_VALUES, "password": JSON_VALUES},
        optional={"next": JSON_VALUES},
    ).map(lambda v: json.dumps(v).encode()),
)


@pytest.mark.timeout(600)
@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    authorization=st.one_of(st.none(), HEADER_TEXT, HEADER_TEXT.map(lambda t: "Bearer " + t)),
    cookie=st.one_of(st.none(), HEADER_TEXT.filter(lambda t: ";" not in t and "," not in t)),
    origin=st.one_of(st.none(), HEADER_TEXT),
    body=LOGIN_BODIES,
    ctype=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/x"]
    ),
)
async def test_gate_and_login_never_fail_inside(
    gate: Gate, authorization, cookie, origin, body, ctype
) -> None:
    headers = {"Content-Type": ctype}
    if authorization is not None:
        headers["Authorization"] = authorization
    if origin is not None:
        headers["Origin"] = origin
    cookies = {"tessera_session": cookie} if cookie else None
    async with aiohttp.ClientSession(cookies=cookies) as session:
        for method, path in (("POST", "/api/login"), ("GET", "/api/me"), ("POST", "/api/logout"),
                             ("GET", "/dicomweb/studies"), ("POST", "/api/worklist")):  # fmt: skip
            async with session.request(
                method, gate.url + path, data=body, headers=headers, allow_redirects=False
            ) as resp:
                assert resp.status < 500, (method, path, resp.status, await resp.text())
