"""STOW-RS (PS3.18 10.5): multipart/related application/dicom bodies, streamed to disk."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.helpers import parse_mimetype

from hub.app_keys import ARCHIVE_KEY
from hub.archive import IngestResult, Source, errors
from hub.dicomweb.media import DICOM
from hub.dicomweb.multipart import BadBody, StagedPart, TooLarge, stage_parts
from hub.dicomweb.responses import base_url, dicom_json, element, warning
from hub.security import actor_of
from hub.security.visibility import scope_of

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
RETRIEVE_URL = "00081190"
REFERENCED_SOP_CLASS = "00081150"
REFERENCED_SOP_INSTANCE = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
STUDY_MISMATCH = 0xA900
COERCED = 0xB000


async def store_instances(request: web.Request) -> web.Response:
    archive = request.app[ARCHIVE_KEY]
    target_study = request.match_info.get("study")
    refusal = _check_request(request, archive.settings.max_upload_bytes)
    if refusal is not None:
        return refusal
    staged: list[StagedPart] = []
    try:
        async for part in stage_parts(request, archive.store, archive.settings.max_upload_bytes):
            staged.append(part)
    except TooLarge as exc:
        await _discard(staged)
        return _refused(413, str(exc))
    except BadBody as exc:
        await _discard(staged)
        return _refused(400, str(exc))
    except BaseException:  # the client went away, or sent its body too slowly
        await asyncio.shield(_discard(staged))
        raise
    if not staged:
        return _refused(400, "The body holds no parts")
    who = request.get("principal")
    source = Source("stow", actor=actor_of(who), address=request.remote, scope=scope_of(who))
    results = [await _ingest_part(archive, part, target_study, source) for part in staged]
    return _response(request, results, target_study)


def _check_request(request: web.Request, limit: int) -> web.Response | None:
    mime = parse_mimetype(request.headers.get("Content-Type", ""))
    if (mime.type, mime.subtype) != ("multipart", "related"):
        return _refused(415, f"Expected multipart/related, got {request.content_type}")
    part_type = mime.parameters.get("type", DICOM).strip('"').lower()
    if part_type != DICOM:
        return _refused(415, f'Only type="{DICOM}" bodies are accepted, not {part_type}')
    if not mime.parameters.get("boundary"):
        return _refused(400, "The multipart Content-Type has no boundary")
    if request.content_length is not None and request.content_length > limit:
        return _refused(413, f"The body exceeds the limit of {limit} bytes")
    return None


async def _ingest_part(archive, part: StagedPart, target_study: str | None, source: Source):
    if part.spool is None:
        return IngestResult(
            "failed",
            reason=errors.CANNOT_UNDERSTAND,
            message=f"Part of type {part.content_type or 'none'} is not {DICOM}",
        )
    if part.size == 0:
        await _discard([part])
        return IngestResult("failed", reason=errors.CANNOT_UNDERSTAND, message="Empty part")
    if target_study is not None:
        study = await _peek_study(part)
        if study != target_study:
            await _discard([part])
            return IngestResult(
                "failed",
                study_uid=study or "",
                reason=STUDY_MISMATCH,
                message=f"Instance belongs to study {study}, not {target_study}",
            )
    return await archive.ingest_spool(part.spool, source=source)


async def _peek_study(part: StagedPart) -> str | None:
    import pydicom

    def read() -> str | None:
        assert part.spool is not None
        try:
            with part.spool.reader() as f:
                ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
            return str(ds.get("StudyInstanceUID") or "") or None
        except Exception:
            return None  # the ingest path reports why the part is unreadable

    study = await asyncio.get_running_loop().run_in_executor(None, read)
    return study


def _response(request: web.Request, results: list[IngestResult], study: str | None) -> web.Response:
    base = base_url(request)
    stored = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    body: dict[str, Any] = {}
    study_uids = {r.study_uid for r in stored}
    if study or len(study_uids) == 1:
        body[RETRIEVE_URL] = element("UR", f"{base}/studies/{study or next(iter(study_uids))}")
    if stored:
        body[REFERENCED_SOP_SEQUENCE] = {
            "vr": "SQ",
            "Value": [_referenced(base, r) for r in stored],
        }
    if failed:
        body[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": [_failed(r) for r in failed]}
    warned = [w for r in stored for w in r.warnings]
    waits = [r.retry_after for r in failed if r.retry_after is not None]
    headers: dict[str, str] = {}
    if not stored and failed and len(waits) == len(failed):
        status = 503  # the store is unavailable: each failure says so, and it is worth a retry
        headers["Retry-After"] = str(max(1, round(max(waits))))
    elif not stored:
        status = 409
    elif failed or warned:
        status = 202
    else:
        status = 200
    if warned:
        headers["Warning"] = warning(f"Stored with warnings: {'; '.join(warned)}")
    return dicom_json(dict(sorted(body.items())), status=status, headers=headers or None)


def _referenced(base: str, r: IngestResult) -> dict[str, Any]:
    item = {
        REFERENCED_SOP_CLASS: element("UI", r.sop_class_uid),
        REFERENCED_SOP_INSTANCE: element("UI", r.sop_instance_uid),
        RETRIEVE_URL: element(
            "UR",
            f"{base}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_instance_uid}",
        ),
    }
    if r.warnings:
        item[WARNING_REASON] = element("US", errors.WARNING_DOES_NOT_MATCH_SOP_CLASS)
        item["00000902"] = element("LO", "; ".join(r.warnings)[:64])
    return item


def _failed(r: IngestResult) -> dict[str, Any]:
    item: dict[str, Any] = {
        REFERENCED_SOP_CLASS: element("UI", *([r.sop_class_uid] if r.sop_class_uid else [])),
        REFERENCED_SOP_INSTANCE: element(
            "UI", *([r.sop_instance_uid] if r.sop_instance_uid else [])
        ),
        FAILURE_REASON: element("US", r.reason or errors.PROCESSING_FAILURE),
        # ErrorComment-style text so that a person can read why.
        "00000902": element("LO", r.message[:64]),
    }
    return item


def _refused(status: int, message: str) -> web.Response:
    reason = {
        400: errors.CANNOT_UNDERSTAND,
        413: errors.OUT_OF_RESOURCES,
        415: errors.CANNOT_UNDERSTAND,
    }
    body = {
        FAILED_SOP_SEQUENCE: {
            "vr": "SQ",
            "Value": [
                {
                    FAILURE_REASON: element("US", reason.get(status, errors.PROCESSING_FAILURE)),
                    "00000902": element("LO", message[:64]),
                }
            ],
        }
    }
    headers = {"Warning": warning(message)}
    return dicom_json(body, status=status, headers=headers)


async def _discard(staged: list[StagedPart]) -> None:
    loop = asyncio.get_running_loop()
    for part in staged:
        if part.spool is not None:
            await loop.run_in_executor(None, part.spool.discard)
