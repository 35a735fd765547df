"""A reader process's application and the primary it relays to, both served in this process.

Served in one process so that each request's route is known: what is sent to the reader's port
is answered by the reader or relayed by it, never accepted by the primary directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pydicom
import pytest
from aiohttp import web
from dicomweb_client.api import DICOMwebClient
from hubtest import free_port
from pydicom.data import get_testdata_file
from sqlalchemy import select

from hub.app import build_app
from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.archive.archive import VERSIONED_CACHE_SECONDS
from hub.config import Settings
from hub.security.accounts import create_user, issue_token
from hub.security.audit_trail import attach
from hub.security.tables import audit_log
from hub.serve.proxy import Upstream

PASSWORD = "correct horse battery staple"


@dataclass
class Pair:
    primary_url: str
    reader_url: str
    primary_runner: web.AppRunner
    headers: dict[str, str]
    app: web.Application


@contextlib.asynccontextmanager
async def primary_and_reader(settings: Settings) -> AsyncIterator[Pair]:
    sockets = tempfile.mkdtemp(prefix="tessera-test-")
    path = f"{sockets}/primary.sock"
    app = await build_app(settings, relayed=True)
    primary = web.AppRunner(app, access_log=None)
    await primary.setup()
    await web.TCPSite(primary, "127.0.0.1", settings.port).start()
    await web.UnixSite(primary, path).start()
    upstream = Upstream(path)
    await upstream.start()
    reader_app = await build_app(dataclasses.replace(settings), upstream=upstream)
    reader = web.AppRunner(reader_app, access_log=None)
    await reader.setup()
    reader_port = free_port()
    await web.TCPSite(reader, "127.0.0.1", reader_port).start()
    engine = app[ARCHIVE_KEY].engine
    await create_user(engine, "pat", "admin", PASSWORD)
    _, secret = await issue_token(engine, "pat", label="tests")
    try:
        yield Pair(
            f"http://127.0.0.1:{settings.port}",
            f"http://127.0.0.1:{reader_port}",
            primary,
            {"Authorization": f"Bearer {secret}"},
            app,
        )
    finally:
        await reader.cleanup()
        await upstream.close()
        await primary.cleanup()
        shutil.rmtree(sockets, ignore_errors=True)


@pytest.fixture
async def pair(settings: Settings) -> AsyncIterator[Pair]:
    async with primary_and_reader(settings) as p:
        yield p


def _client(url: str, headers: dict[str, str]) -> DICOMwebClient:
    return DICOMwebClient(url=f"{url}/dicomweb", headers=headers)


async def test_reader_answers_reads_and_relays_stores(pair: Pair) -> None:
    files = [
        get_testdata_file("CT_small.dcm"),
        get_testdata_file("emri_small_jpeg_2k_lossless.dcm"),
    ]
    datasets = [pydicom.dcmread(f) for f in files]
    sent = {
        ds.SOPInstanceUID: hashlib.sha256(Path(f).read_bytes()).hexdigest()
        for ds, f in zip(datasets, files, strict=True)
    }
    client = _client(pair.reader_url, pair.headers)

    stored = await asyncio.to_thread(client.store_instances, datasets)
    assert len(stored.ReferencedSOPSequence) == 2

    # The primary stops: what the reader answers now, it answers by itself.
    await pair.primary_runner.cleanup()
    found = await asyncio.to_thread(client.search_for_instances)
    assert {item["00080018"]["Value"][0] for item in found} == set(sent)
    for ds in datasets:
        again = await asyncio.to_thread(
            client.retrieve_instance, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        )
        assert again.SOPInstanceUID == ds.SOPInstanceUID
    mri = datasets[1]
    frames = await asyncio.to_thread(
        client.retrieve_instance_frames,
        mri.StudyInstanceUID,
        mri.SeriesInstanceUID,
        mri.SOPInstanceUID,
        frame_numbers=[1, mri.NumberOfFrames],
        media_types=(("application/octet-stream", "*"),),
    )
    expected = list(
        pydicom.encaps.generate_frames(mri.PixelData, number_of_frames=mri.NumberOfFrames)
    )
    assert frames == [expected[0], expected[-1]]

    async with aiohttp.ClientSession(headers=pair.headers) as http:
        url = f"{pair.reader_url}/dicomweb/studies/{mri.StudyInstanceUID}"
        async with http.get(
            f"{url}/series/{mri.SeriesInstanceUID}/instances/{mri.SOPInstanceUID}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        ) as r:
            assert r.status == 200
            body = await r.read()
        assert sent[mri.SOPInstanceUID] in {
            hashlib.sha256(p).hexdigest() for p in _parts(body, r.headers["Content-Type"])
        }
        async with http.post(f"{pair.reader_url}/dicomweb/studies", data=b"x") as r:
            assert r.status == 503
            assert r.headers["Retry-After"]
            assert "main process" in (await r.json())["detail"]


def _parts(body: bytes, content_type: str) -> list[bytes]:
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"').encode()
    chunks = body.split(b"--" + boundary)[1:-1]
    return [chunk.split(b"\r\n\r\n", 1)[1][:-2] for chunk in chunks]


async def test_bad_store_through_the_reader_is_refused_and_nothing_is_stored(pair: Pair) -> None:
    boundary = "relay-test"
    body = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--{boundary}--\r\n"
    headers = {
        **pair.headers,
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{pair.reader_url}/dicomweb/studies", data=body.encode(), headers=headers
        ) as r:
            assert r.status in (400, 409)
            answer = await r.json()
        assert answer["00081198"]["Value"][0]["00081197"]["Value"]  # FailureReason
        async with http.get(f"{pair.reader_url}/dicomweb/instances", headers=pair.headers) as r:
            assert r.status in (200, 204)
            assert (await r.read()).strip() in (b"", b"[]")


async def _login_sources(app: web.Application) -> list[str | None]:
    engine = app[ARCHIVE_KEY].engine
    await attach(engine, app[SETTINGS_KEY].data_dir).flush()
    async with engine.connect() as conn:
        rows = await conn.execute(select(audit_log.c.source).where(audit_log.c.action == "login"))
        return [row.source for row in rows]


async def test_relayed_login_keeps_the_client_address_and_sets_the_cookie(pair: Pair) -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    credentials = {"username": "pat", "password": PASSWORD}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            f"{pair.reader_url}/api/login", json=credentials, headers=spoofed
        ) as r:
            assert r.status == 200, await r.text()
            cookie = r.headers["Set-Cookie"]
        assert "Secure" not in cookie  # the client's claim of https was not believed
        async with http.get(f"{pair.reader_url}/api/me") as r:  # relayed, with the cookie
            assert r.status == 200
            assert (await r.json())["user"] == "pat"
        async with http.post(
            f"{pair.primary_url}/api/login", json=credentials, headers=spoofed
        ) as r:
            assert r.status == 200
    sources = await _login_sources(pair.app)
    assert sources == ["127.0.0.1", "127.0.0.1"]


async def test_websocket_is_relayed_both_ways(pair: Pair) -> None:
    request = {"patient": {"name": "Relay^Test", "id": "RELAY-1"}, "accession": "ACC-R1"}
    async with aiohttp.ClientSession(headers=pair.headers) as http:
        async with http.post(f"{pair.reader_url}/api/telehealth/sessions", json=request) as r:
            assert r.status == 201, await r.text()
            session = await r.json()
        url = f"{pair.reader_url}/api/telehealth/sessions/{session['id']}/signal"
        async with http.ws_connect(url, params={"token": session["clinic_token"]}) as ws:
            first = await ws.receive_json(timeout=60)
            assert first["type"] == "state"
            assert first["role"] == "clinic"
            await ws.send_json({"type": "no-such-message"})
            reply = await ws.receive_json(timeout=60)
            assert reply["type"] == "error"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, params={"token": "wrong"})
        assert refused.value.status == 403


async def test_a_reader_serves_a_new_version_once_its_cache_lapses(settings: Settings) -> None:
    settings.duplicate_policy = "version"
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    original = ds.PixelData
    async with primary_and_reader(settings) as pair:
        client = _client(pair.reader_url, pair.headers)
        uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        media = (("application/octet-stream", "*"),)

        def frame() -> bytes:
            return client.retrieve_instance_frames(*uids, frame_numbers=[1], media_types=media)[0]

        await asyncio.to_thread(client.store_instances, [ds])
        assert await asyncio.to_thread(frame) == original  # now in the reader's cache
        ds.PixelData = bytes(len(original))
        await asyncio.to_thread(client.store_instances, [ds])
        # The reader re-checks its cached entry once it is VERSIONED_CACHE_SECONDS old.
        deadline = time.monotonic() + VERSIONED_CACHE_SECONDS + 60
        while (served := await asyncio.to_thread(frame)) != ds.PixelData:
            assert served == original, "neither the old nor the new version"
            assert time.monotonic() < deadline, "the reader kept serving the old version"
            await asyncio.sleep(0.2)


async def test_urls_behind_a_trusted_proxy_through_a_reader(settings: Settings) -> None:
    """The reader takes the proxy's headers (this test's client plays the proxy on 127.0.0.1)
    and passes scheme, host and path prefix on to the primary, which writes STOW-RS's URLs;
    a prefix a client claims itself is not passed on."""
    settings.trusted_proxies = ["127.0.0.1"]
    public = "https://pacs.example.org:8443/hub/dicomweb/"
    proxy_headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "pacs.example.org:8443",
        "X-Forwarded-Prefix": "/hub",
    }
    body, content_type = _stow_body(get_testdata_file("CT_small.dcm"))
    async with primary_and_reader(settings) as pair, aiohttp.ClientSession() as session:
        headers = {**pair.headers, **proxy_headers}
        async with session.post(
            pair.reader_url + "/dicomweb/studies",
            data=body,
            headers={**headers, "Content-Type": content_type},
        ) as r:
            assert r.status == 200
            stored = await r.json(content_type=None)
        assert stored["00081190"]["Value"][0].startswith(public)
        async with session.get(pair.reader_url + "/dicomweb/studies", headers=headers) as r:
            (study,) = await r.json()
        assert study["00081190"]["Value"][0].startswith(public)


def _stow_body(path: str) -> tuple[bytes, str]:
    boundary = "relay-test"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + Path(path).read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'
