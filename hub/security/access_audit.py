"""Audit of reads through DICOMweb, after the ATNA "DICOM Instances Accessed" and "Query" events.

A viewer asks for hundreds of frames a minute, so one record stands for a user's reads of a
study within ``WINDOW_SECONDS``; queries are recorded once per user and query string within
the same window.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive.index import patients, studies
from hub.security.accounts import Principal
from hub.security.audit_trail import audit

WINDOW_SECONDS = 600.0
_recent: OrderedDict[tuple, float] = OrderedDict()
_LIMIT = 20_000


def _first_in_window(key: tuple) -> bool:
    now = time.monotonic()
    seen = _recent.get(key)
    if seen is not None and now - seen < WINDOW_SECONDS:
        return False
    _recent[key] = now
    _recent.move_to_end(key)
    while len(_recent) > _LIMIT:
        _recent.popitem(last=False)
    return True


async def _patient_of(engine: AsyncEngine, study_uid: str) -> str | None:
    query = (
        select(patients.c.patient_id)
        .join(studies, studies.c.patient_fk == patients.c.id)
        .where(studies.c.study_uid == study_uid)
    )
    async with engine.connect() as conn:
        return await conn.scalar(query)


async def record_read(
    engine: AsyncEngine, request: web.Request, who: Principal, status: int
) -> None:
    """Called by the gate after a ``dicomweb.read.*`` request was answered."""
    study = request.match_info.get("study")
    outcome = "success" if status < 400 else "failure"
    if study is not None:
        if not _first_in_window((who.user, study, outcome)):
            return
        await audit(
            engine,
            who=who.user,
            role=who.role,
            action="study.read",
            outcome=outcome,
            patient=await _patient_of(engine, study),
            study=study,
            source=request.remote,
            detail={"route": request.match_info.route.name, "status": status},
        )
    elif _first_in_window((who.user, request.path, request.query_string)):
        await audit(
            engine,
            who=who.user,
            role=who.role,
            action="query",
            outcome=outcome,
            source=request.remote,
            detail={"path": request.path, "query": request.query_string, "status": status},
        )
