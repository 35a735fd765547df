"""STOW-RS sender: POST each stored Part-10 file unchanged to ``{url}/studies`` (PS3.18 10.5).

One instance per request, so the HTTP status speaks for exactly one queued task. The file is
streamed from the store (aiohttp reads file payloads in an executor).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import hdrs

from hub.forward.config import StowTarget, Timeouts
from hub.forward.outcome import Outcome, from_dimse_status, from_http_status

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
MIN_UPLOAD_RATE = 256 * 1024  # bytes/s a STOW-RS upload may fall to before it is given up


def session_for(target: StowTarget, timeouts: Timeouts) -> aiohttp.ClientSession:
    headers = {hdrs.ACCEPT: "application/dicom+json"}
    if target.token:
        headers[hdrs.AUTHORIZATION] = f"Bearer {target.token}"
    timeout = aiohttp.ClientTimeout(connect=timeouts.connect, sock_read=timeouts.http)
    return aiohttp.ClientSession(headers=headers, timeout=timeout)


async def send_one(
    session: aiohttp.ClientSession, target: StowTarget, path: Path, sop_uid: str, timeouts: Timeouts
) -> Outcome:
    loop = asyncio.get_running_loop()
    try:
        f = await loop.run_in_executor(None, open, path, "rb")
    except OSError as exc:
        return Outcome.dead(f"stored file cannot be read: {exc}")
    try:
        size = os.fstat(f.fileno()).st_size
        # A whole slide can take a while: allow the configured time plus a floor transfer rate.
        timeout = aiohttp.ClientTimeout(total=timeouts.http + size / MIN_UPLOAD_RATE)
        with aiohttp.MultipartWriter("related") as body:
            body.append(f, {hdrs.CONTENT_TYPE: "application/dicom"})
            body.headers[hdrs.CONTENT_TYPE] += '; type="application/dicom"'
            async with session.post(target.studies_url, data=body, timeout=timeout) as resp:
                text = await resp.text(errors="replace")
                return _judge(resp.status, text, sop_uid)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Outcome.retry(f"cannot reach {target.studies_url}: {_describe(exc)}")
    finally:
        await loop.run_in_executor(None, f.close)


async def probe(target: StowTarget, timeouts: Timeouts) -> tuple[bool, str]:
    """Search the target for one study, as the forwarder would reach it (its token too):
    (answered 2xx, what happened)."""
    url = f"{target.studies_url}?limit=1"
    try:
        async with session_for(target, timeouts) as session, session.get(url) as resp:
            if 200 <= resp.status < 300:
                return True, f"{target.url} answered a study search with {resp.status}"
            return False, f"{target.url} answered a study search with {resp.status} {resp.reason}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return False, f"cannot reach {target.studies_url}: {_describe(exc)}"


def _judge(status: int, text: str, sop_uid: str) -> Outcome:
    """Map the STOW-RS response to an outcome, using the per-instance reason when given."""
    body = _json(text)
    failure = _reason_for(body, FAILED_SOP_SEQUENCE, FAILURE_REASON, sop_uid)
    if failure is not None:
        outcome = from_dimse_status(failure)
        return Outcome(outcome.verdict, f"HTTP {status}, {outcome.message}", status)
    if status in (200, 202):
        warning = _reason_for(body, REFERENCED_SOP_SEQUENCE, WARNING_REASON, sop_uid)
        if warning is not None:
            return Outcome.done(f"stored with warning 0x{warning:04X}", status)
        return Outcome.done(status=status)
    return from_http_status(status, text if body is None else "")


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _reason_for(body: Any, sequence: str, reason_tag: str, sop_uid: str) -> int | None:
    if not isinstance(body, dict):
        return None
    for item in (body.get(sequence) or {}).get("Value") or []:
        uids = (item.get(REFERENCED_SOP_INSTANCE_UID) or {}).get("Value") or []
        reasons = (item.get(reason_tag) or {}).get("Value") or []
        if sop_uid in uids and reasons:
            return int(reasons[0])
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
