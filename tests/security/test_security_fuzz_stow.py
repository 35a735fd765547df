"""Fuzzing STOW-RS with malformed multipart bodies and damaged DICOM files.

Target: no 5xx, the server keeps answering, and nothing half-stored (every indexed object has
its whole blob, every blob is indexed, no temp file is left behind).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from hub.archive.verify import verify
from hub.security.accounts import create_user, issue_token
from hub.security.middleware import SECURITY_KEY

SEEDS = [
    Path(get_testdata_file(name)).read_bytes()
    for name in ("MR_small.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm", "rtplan.dcm",
                 "image_dfl.dcm", "ExplVR_BigEnd.dcm", "no_meta.dcm")
]  # fmt: skip
WILD_LENGTHS = [b"\xff\xff\xff\xff", b"\xfe\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x01\0\0\0"]
PART_TYPES = [
    "application/dicom",
    "application/dicom",
    "application/octet-stream",
    None,
    "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
]
BOUNDARY_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789'()+_,-./:=? ")


@st.composite
def damaged_dicom(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "length"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 256))]
        elif op == "length":  # a wild element length, the classic parser trap
            data[pos : pos + 4] = draw(st.sampled_from(WILD_LENGTHS))
    return bytes(data)


@st.composite
def stow_request(draw) -> tuple[str, dict[str, str], bytes]:
    boundary = draw(st.text(BOUNDARY_CHARS, min_size=1, max_size=70)).strip() or "b"
    newline = draw(st.sampled_from([b"\r\n", b"\n"]))
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        payload = draw(st.one_of(damaged_dicom(), st.binary(max_size=2048)))
        ctype = draw(st.sampled_from(PART_TYPES))
        head = b"" if ctype is None else b"Content-Type: " + ctype.encode() + newline
        head += draw(st.sampled_from([b"", b"Content-Length: 3" + newline,
                                      b"X-Junk: " + b"y" * 9000 + newline]))  # fmt: skip
        parts.append(b"--" + boundary.encode() + newline + head + newline + payload + newline)
    body = draw(st.sampled_from([b"", b"preamble" + newline])) + b"".join(parts)
    if draw(st.booleans()):
        body += b"--" + boundary.encode() + b"--" + newline
    body += draw(st.sampled_from([b"", b"epilogue", b"--" + boundary.encode()]))
    declared = draw(st.sampled_from([boundary, boundary, boundary + "x", ""]))
    ctype = draw(
        st.sampled_from([
            f'multipart/related; type="application/dicom"; boundary="{declared}"',
            f"multipart/related; type=application/dicom; boundary={declared}",
            f'multipart/related; boundary="{declared}"',
            f'multipart/related; type="application/dicom+json"; boundary="{declared}"',
            "application/dicom",
            "multipart/related",
        ])
    )  # fmt: skip
    path = draw(st.sampled_from(["/dicomweb/studies", "/dicomweb/studies/1.2.3.4"]))
    return path, {"Content-Type": ctype}, body


async def _auth(hub_server) -> dict[str, str]:
    if SECURITY_KEY not in hub_server.app:
        return {}
    engine = hub_server.archive.engine
    if not hasattr(hub_server, "_fuzz_token"):
        await create_user(engine, "fuzzer", "integration", None)
        hub_server._fuzz_token = (await issue_token(engine, "fuzzer", ttl_seconds=3600))[1]
    return {"Authorization": f"Bearer {hub_server._fuzz_token}"}


@pytest.mark.timeout(900)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
    derandomize=True,
)  # fmt: skip
@given(request=stow_request())
async def test_stow_fuzz(hub_server, request) -> None:
    path, headers, body = request
    headers = {**headers, **await _auth(hub_server)}
    async with aiohttp.ClientSession() as session:
        async with session.post(hub_server.url + path, data=body, headers=headers) as resp:
            text = await resp.text()
            assert resp.status < 500, (resp.status, text[:500])
            assert resp.status in (200, 202, 400, 409, 413, 415), (resp.status, text[:500])
        async with session.get(hub_server.url + "/dicomweb/studies", headers=headers) as alive:
            assert alive.status == 200
    report = await verify(hub_server.archive, deep=True)
    assert report.clean, report
