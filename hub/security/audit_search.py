"""Searching the audit trail: by who, patient, study, action, outcome and time, newest first,
one page at a time.

Pages are cut on the sequence number (keyset paging): a page ends with a cursor, and the next
page is the records before it. Records appended meanwhile land above the first page, so walking
back never skips or repeats one. The trail's MACs are never part of an answer: what a record
says is here, whether it was tampered with is ``audit_trail.verify``'s to tell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.security.audit_trail import OUTCOMES
from hub.security.tables import audit_log

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
TEXT_FILTERS = {"who": 128, "patient": 128, "study": 64, "action": 64}  # the columns' lengths
PARAMETERS = (*TEXT_FILTERS, "outcome", "since", "until", "before", "limit")
# An action ending in a dot stands for every action under it ("ae." for ae.allow, ae.remove).
PREFIX_MARK = "."
EPOCH_SECONDS = re.compile(r"\d{1,12}(\.\d{1,6})?")
SHOWN = [c for c in audit_log.c if c.name != "mac"]


class SearchError(ValueError):
    """A search parameter the trail cannot be searched with (HTTP 400)."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


@dataclass(frozen=True)
class AuditSearch:
    who: str | None = None
    patient: str | None = None
    study: str | None = None
    action: str | None = None  # exact, or a prefix ending in "."
    outcome: str | None = None
    since: float | None = None  # records at or after this time (seconds since 1970, UTC)
    until: float | None = None  # records before this time
    before: int | None = None  # records with a lower sequence number: the next page's cursor
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> AuditSearch:
        """A search from query parameters (an empty value: not given), or SearchError naming
        the first one that is unknown, repeated or malformed."""
        given: dict[str, str] = {}
        for name, value in pairs:
            if name not in PARAMETERS:
                raise SearchError(
                    name, f"is not a search parameter; known: {', '.join(PARAMETERS)}"
                )
            if name in given:
                raise SearchError(name, "is given more than once")
            given[name] = value
        values = {k: v for k, v in given.items() if v != ""}
        for name, longest in TEXT_FILTERS.items():
            if len(values.get(name, "")) > longest:
                raise SearchError(name, f"is longer than {longest} characters")
        outcome = values.get("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            raise SearchError("outcome", f"must be one of {', '.join(OUTCOMES)}")
        search = cls(
            **{name: values.get(name) for name in TEXT_FILTERS},
            outcome=outcome,
            since=_moment(values, "since"),
            until=_moment(values, "until"),
            before=_whole(values, "before", 1, 2**63 - 1),
            limit=_whole(values, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT,
        )
        if search.since is not None and search.until is not None and search.since >= search.until:
            raise SearchError("until", "must be later than since")
        return search

    def conditions(self) -> list[ColumnElement[bool]]:
        c = audit_log.c
        exact = [
            (c.who, self.who),
            (c.patient, self.patient),
            (c.study, self.study),
            (c.outcome, self.outcome),
        ]
        where = [column == value for column, value in exact if value is not None]
        if self.action is not None:
            if self.action.endswith(PREFIX_MARK):
                where.append(c.action.startswith(self.action, autoescape=True))
            else:
                where.append(c.action == self.action)
        if self.since is not None:
            where.append(c.at >= self.since)
        if self.until is not None:
            where.append(c.at < self.until)
        if self.before is not None:
            where.append(c.seq < self.before)
        return where

    def as_detail(self) -> dict:
        """What was searched for, for the audit record of the search."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: float
    time: str  # ``at`` in ISO 8601, UTC
    who: str
    role: str
    action: str
    outcome: str
    patient: str | None
    study: str | None
    source: str | None
    detail: Any  # the JSON the record was written with, or its text when it is not JSON


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    next: int | None  # ``before`` for the next, older page; None: no older record matches


async def search(engine: AsyncEngine, wanted: AuditSearch) -> AuditPage:
    query = (
        select(*SHOWN)
        .where(*wanted.conditions())
        .order_by(audit_log.c.seq.desc())
        .limit(wanted.limit + 1)  # one more tells whether an older page exists
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    records = [_record(row) for row in rows[: wanted.limit]]
    more = len(rows) > wanted.limit
    return AuditPage(records, records[-1].seq if more else None)


def _record(row) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        at=row.at,
        time=datetime.fromtimestamp(row.at, UTC).isoformat(timespec="milliseconds"),
        who=row.who,
        role=row.role,
        action=row.action,
        outcome=row.outcome,
        patient=row.patient,
        study=row.study,
        source=row.source,
        detail=_parsed(row.detail),
    )


def _parsed(detail: str | None) -> object:
    """Details are written as JSON objects; one given as text, or cut at the trail's length
    limit, is no JSON and stays text."""
    if detail is None:
        return None
    try:
        return json.loads(detail)
    except ValueError:
        return detail


def _moment(values: dict[str, str], name: str) -> float | None:
    """A time as ISO 8601 (UTC unless it names an offset) or as seconds since 1970."""
    text = values.get(name)
    if text is None:
        return None
    if EPOCH_SECONDS.fullmatch(text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        raise SearchError(name, "must be an ISO 8601 time or seconds since 1970") from None


def _whole(values: dict[str, str], name: str, lowest: int, highest: int) -> int | None:
    text = values.get(name)
    if text is None:
        return None
    if not (
        text.isascii() and text.isdigit() and len(text) <= 19 and lowest <= int(text) <= highest
    ):
        raise SearchError(name, f"must be an integer from {lowest} to {highest}")
    return int(text)
