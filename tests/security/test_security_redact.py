"""No patient data in server logs."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import aiohttp
import pydicom
from aiohttp import web
from pydicom.data import get_testdata_file
from security_support import gated_app

from hub.security.accounts import create_user, issue_token
from hub.security.redact import RedactFilter, SafeAccessLogger, redact


def test_query_strings_and_identifiers_are_removed() -> None:
    line = 'GET /dicomweb/studies?PatientName=DOE%5EJOHN&PatientID=12345 HTTP/1.1" 200'
    assert redact(line) == 'GET /dicomweb/studies?<redacted> HTTP/1.1" 200'
    assert "12345" not in redact("matching PatientID=12345, StudyDate=2020")
    assert "StudyDate=2020" in redact("matching PatientID=12345, StudyDate=2020")
    assert "Smith" not in redact('{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Smith"}]}}')
    assert "998877" not in redact('{"PatientID": "998877", "Modality": "SM"}')
    assert "A-77" not in redact("AccessionNumber: A-77 refused")


def test_dataset_reprs_lose_patient_module_values() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    cleaned = redact(str(ds)).splitlines()
    patient = [line for line in cleaned if line.lstrip().startswith("(0010,") and ":" in line]
    assert len(patient) >= 5
    assert all(line.endswith(": <redacted>") for line in patient)
    assert not any(str(ds.PatientName) in line for line in patient)
    assert any(ds.StudyInstanceUID in line for line in cleaned)  # object identifiers stay


def test_filter_rewrites_records_and_tracebacks(caplog) -> None:
    logger = logging.getLogger("tessera.test.redact")
    logger.addFilter(RedactFilter())
    with caplog.at_level(logging.INFO, logger="tessera.test.redact"):
        logger.info("stored PatientName=%s for %s", "DOE^JANE", "/dicomweb/studies?PatientID=42")
        try:
            raise ValueError("bad PatientID=424242")
        except ValueError:
            logger.exception("failed")
    text = caplog.text
    assert "DOE^JANE" not in text and "PatientID=42" not in text and "424242" not in text
    assert "stored PatientName=<redacted>" in text


async def test_access_log_has_no_query_string(engine, tmp_path, caplog) -> None:
    app = gated_app(engine, tmp_path)
    logger = logging.getLogger("tessera.test.access")
    runner = web.AppRunner(app, access_log_class=SafeAccessLogger, access_log=logger)
    await runner.setup()
    site = web.SockSite(runner, _bound_socket())
    await site.start()
    await create_user(engine, "reader", "pathologist", None)
    _, secret = await issue_token(engine, "reader")
    url = f"http://127.0.0.1:{site._sock.getsockname()[1]}"
    try:
        with caplog.at_level(logging.INFO, logger="tessera.test.access"):
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    url + "/dicomweb/studies?PatientName=DOE^JOHN",
                    headers={"Authorization": f"Bearer {secret}"},
                ) as resp,
            ):
                assert resp.status == 200
            deadline = time.monotonic() + 60  # the line is written once the response is out
            while "dicomweb" not in caplog.text and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert '"GET /dicomweb/studies HTTP/1.1" 200' in caplog.text
    assert " reader " in caplog.text
    assert "DOE" not in caplog.text


def _bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock
