"""Tamper-evident audit trail: hash-chained, HMAC-keyed records after IHE ATNA.

Each record's MAC is HMAC-SHA256(key, previous MAC + canonical record, its sequence number
included). Editing a record breaks its MAC; deleting or reordering records breaks the
sequence or the chain; cutting records off the end is caught by the head anchor, a small file
beside the key that holds the last sequence number and MAC this node wrote. Without the key
nobody can forge a consistent chain, so the key never goes into the database.

Every node of one index appends to the one chain, signed with the same key (TESSERA_AUDIT_KEY
on each), under a PostgreSQL advisory lock. Each node keeps its own head anchor and checks
that the record it names is still on the chain, however far the other nodes have gone on.

Writes are cheap for the caller: ``audit()`` puts the record on a queue and a single writer
task appends whole batches in one transaction; ``AuditLog.close()`` drains the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import socket
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.archive.model import Indexed
from hub.security.keys import KEY_DIR, audit_key
from hub.security.tables import audit_log
from hub.tasks import cancel_and_wait

log = logging.getLogger("hub.security.audit")

GENESIS = "0" * 64
FIELDS = ("who", "role", "action", "outcome", "patient", "study", "source", "detail")
OUTCOMES = {"success": 0, "failure": 8, "denied": 4}  # ATNA EventOutcomeIndicator codes
BATCH = 500
# The PostgreSQL advisory lock that queues the appenders of every node: one chain, one writer
# at a time. bench/audit_bench.py: with two nodes, up to twice the appends a second of retrying
# on a sequence clash, and about what two chains apart would give from batches of 20.
CHAIN_LOCK_KEY = 0x7465_7373_6175_6474  # "tessaudt"


def _canonical(seq: int, at: float, entry: dict) -> bytes:
    body = {"seq": seq, "at": at, **{k: entry.get(k) for k in FIELDS}}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_mac(key: bytes, prev_mac: str, seq: int, at: float, entry: dict) -> str:
    return hmac.new(
        key, prev_mac.encode() + b"\n" + _canonical(seq, at, entry), "sha256"
    ).hexdigest()


def _signed(key: bytes, prev_mac: str, row) -> bool:
    """Whether a stored record's MAC is the one ``key`` gives it after ``prev_mac``."""
    entry = {k: getattr(row, k) for k in FIELDS}
    return hmac.compare_digest(chain_mac(key, prev_mac, row.seq, row.at, entry), row.mac)


def head_path_for(data_dir: Path) -> Path:
    return data_dir / KEY_DIR / "audit.head"


class AuditLog:
    """The writer for one database. ``start()`` for batched background writes."""

    def __init__(self, engine: AsyncEngine, key: bytes, head_path: Path | None = None) -> None:
        self.engine = engine
        self.key = key
        self.head_path = head_path
        self._queue: asyncio.Queue[dict] | None = None
        self._task: asyncio.Task | None = None
        self._inflight: list[dict] = []

    # -- writing ------------------------------------------------------------------------
    def submit(self, entry: dict) -> None:
        assert self._queue is not None
        self._queue.put_nowait(entry)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def spill_path(self) -> Path | None:
        return self.head_path.with_name("audit.unwritten.jsonl") if self.head_path else None

    async def start(self) -> None:
        """Start the background writer, first appending what an earlier stop had to spill."""
        await self._check_key()
        spilled = await asyncio.to_thread(_read_spill, self.spill_path)
        if spilled:
            await self.write(spilled)
            await asyncio.to_thread(self.spill_path.unlink)  # type: ignore[union-attr]
            log.warning("appended %d audit records kept from the last shutdown", len(spilled))
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def _check_key(self) -> None:
        """Say so loudly when the chain's last record was signed with another key: a node
        appending with a key of its own breaks the chain for every node of the index."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(2))
            ).all()
        if not rows:
            return
        last = rows[0]
        if len(rows) == 2 and rows[1].seq == last.seq - 1:
            prev_mac = rows[1].mac
        elif len(rows) == 1 and last.seq == 1:
            prev_mac = GENESIS
        else:
            return  # a gap: verify reports it
        if not _signed(self.key, prev_mac, last):
            log.error(
                "audit record %d was not signed with this node's audit key: every node of one "
                "index needs the same TESSERA_AUDIT_KEY, or the chain cannot be verified",
                last.seq,
            )

    async def flush(self) -> None:
        if self._queue is not None and self.running:
            await self._queue.join()

    async def close(self, grace: float = 30.0) -> None:
        """Write everything queued, then stop the writer.

        If the database does not take the records within ``grace`` seconds they are kept in a file
        beside the head anchor and appended at the next start, so none is lost.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), grace)
        await cancel_and_wait(self._task)
        self._task = None
        pending, self._inflight = self._inflight, []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        if pending:
            if self.spill_path is None:
                log.error("audit: %d records could not be written", len(pending))
            else:
                await asyncio.to_thread(_append_spill, self.spill_path, pending)
                log.error("audit: %d records kept in %s", len(pending), self.spill_path)

    async def _run(self) -> None:
        assert self._queue is not None
        delay = 0.05
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._inflight = batch
            while True:  # a record is never dropped: retry until the database takes it
                try:
                    await self.write(batch)
                    delay = 0.05
                    break
                except Exception:  # noqa: BLE001 - keep the records, report, retry
                    log.exception("audit write failed; retrying")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            self._inflight = []
            for _ in batch:
                self._queue.task_done()

    async def write(self, entries: list[dict]) -> int:
        """Append entries in one transaction; returns the last sequence number."""
        for attempt in range(20):
            try:
                last = await self._append(entries)
                break
            except (IntegrityError, DBAPIError):
                # Another process appended in between (the chain head moved): rebuild on it.
                if attempt == 19:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        if self.head_path is not None:
            await asyncio.to_thread(_write_head, self.head_path, *last)
        return last[0]

    async def _append(self, entries: list[dict]) -> tuple[int, str]:
        async with self.engine.begin() as conn:
            await hold_chain(conn)
            row = (
                await conn.execute(
                    select(audit_log.c.seq, audit_log.c.mac)
                    .order_by(audit_log.c.seq.desc())
                    .limit(1)
                )
            ).one_or_none()
            seq, mac = (row.seq, row.mac) if row else (0, GENESIS)
            rows = []
            for entry in entries:
                seq += 1
                at = entry["at"]
                mac = chain_mac(self.key, mac, seq, at, entry)
                rows.append({"seq": seq, "at": at, **{k: entry.get(k) for k in FIELDS}, "mac": mac})
            await conn.execute(audit_log.insert(), rows)
        return seq, mac


async def hold_chain(conn: AsyncConnection) -> None:
    """Queue behind any other appender until this transaction ends (PostgreSQL). SQLite needs
    no lock: its second writer fails at once and ``write`` rebuilds on the new head."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(CHAIN_LOCK_KEY)))


def _write_head(path: Path, seq: int, mac: str) -> None:
    """Advance the head anchor (never move it back: another process may be ahead)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        current = _parse_head(f.read())
        if current is None or current[0] < seq:
            f.seek(0)
            f.truncate()
            f.write(f"{seq} {mac}\n")
            f.flush()
            os.fsync(f.fileno())


def _append_spill(path: Path, entries: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_spill(path: Path | None) -> list[dict]:
    if path is None or not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _read_head(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _parse_head(text: str) -> tuple[int, str] | None:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1]


# -- the module-level API -----------------------------------------------------------------

_logs: weakref.WeakKeyDictionary[AsyncEngine, AuditLog] = weakref.WeakKeyDictionary()


def attach(engine: AsyncEngine, data_dir: Path, key: str | None = None) -> AuditLog:
    """The audit log for ``engine``, keyed by ``key`` (TESSERA_AUDIT_KEY) or from the data
    directory."""
    existing = _logs.get(engine)
    if existing is not None:
        return existing
    audit_log_ = AuditLog(engine, audit_key(data_dir, key), head_path_for(data_dir))
    _logs[engine] = audit_log_
    return audit_log_


def attached(engine: AsyncEngine) -> bool:
    """Whether ``audit()`` has a log to write to for this engine."""
    return engine in _logs


async def flush(engine: AsyncEngine) -> None:
    """Wait until what was queued for ``engine``'s trail is written (at once if none is)."""
    target = _logs.get(engine)
    if target is not None:
        await target.flush()


def detach(engine: AsyncEngine) -> None:
    _logs.pop(engine, None)


def unknown_name(engine: AsyncEngine, name: str) -> str:
    """How a sign-in under a name that is no account is recorded: "unknown:" and a keyed
    fingerprint of the name. Tries of one name stay linked, while the trail, which is kept for
    years and cannot be edited, never holds what was typed: often a password typed into the
    wrong field."""
    digest = hmac.new(_logs[engine].key, b"sign-in name\0" + name.encode(), hashlib.sha256)
    return "unknown:" + digest.hexdigest()[:16]


def _clip(value: object, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text[:limit]


async def audit(
    engine: AsyncEngine,
    *,
    who: str,
    role: str,
    action: str,
    outcome: str,
    patient: str | None = None,
    study: str | None = None,
    source: str | None = None,
    detail: str | dict | None = None,
) -> None:
    """Record one audit event. Queued when the writer runs (returns at once), else written."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    target = _logs.get(engine)
    if target is None:
        raise RuntimeError(
            "no audit log attached to this engine: call hub.security.audit_trail.attach"
        )
    if isinstance(detail, dict):
        detail = json.dumps(detail, sort_keys=True, default=str)
    entry = {
        "at": round(time.time(), 6),
        "who": _clip(who, 128) or "-",
        "role": _clip(role, 32) or "-",
        "action": _clip(action, 64),
        "outcome": outcome,
        "patient": _clip(patient, 128),
        "study": _clip(study, 64),
        "source": _clip(source, 128),
        "detail": _clip(detail, 8192),
    }
    if target.running:
        target.submit(entry)
    else:
        await target.write([entry])


def archive_subscriber(engine: AsyncEngine) -> Callable[[Indexed], Awaitable[None]]:
    """An ``archive.subscribe`` callback that records every stored object."""

    async def on_event(event: Indexed) -> None:
        src = event.source
        door = src.door or "unknown"
        await audit(
            engine,
            who=src.actor or src.calling_ae or door,
            role=f"door:{door}",
            action=f"instance.{event.status}",
            outcome="success",
            patient=event.patient_id,
            study=event.study_uid,
            source=src.address or src.calling_ae,
            detail={
                "sop_uid": event.sop_uid,
                "sop_class_uid": event.sop_class_uid,
                "series_uid": event.series_uid,
                "sha256": event.sha256,
                **({"warnings": list(event.warnings)} if event.warnings else {}),
            },
        )

    return on_event


# -- verification and export ----------------------------------------------------------------


@dataclass
class Verdict:
    records: int = 0
    problems: list[str] = field(default_factory=list)
    head_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


async def _rows(engine: AsyncEngine) -> AsyncIterator:
    async with engine.connect() as conn:
        result = await conn.stream(select(audit_log).order_by(audit_log.c.seq))
        async for row in result:
            yield row


async def verify(engine: AsyncEngine, key: bytes, head_path: Path | None = None) -> Verdict:
    """Walk the chain; report every record that was edited, removed or moved.

    The head anchor names the last record this node wrote. Other nodes (or this node's other
    processes) may have appended since, so the anchored record must be on the chain with the
    anchored MAC, wherever it is; only a chain ending before it was cut off. The anchor is read
    before the walk, so that records appended meanwhile never make it look cut off.
    """
    verdict = Verdict()
    head_text = await asyncio.to_thread(_read_head, head_path) if head_path else None
    head = _parse_head(head_text) if head_text is not None else None
    if head_text is not None:
        verdict.head_checked = True
        if head is None:
            verdict.problems.append(f"head anchor {head_path} is unreadable")
    prev_mac, expected = GENESIS, 1
    async for row in _rows(engine):
        verdict.records += 1
        if verdict.records % 500 == 0:
            await asyncio.sleep(0)  # a long chain must not hold the event loop
        if row.seq != expected:
            if row.seq > expected:
                verdict.problems.append(f"records {expected}..{row.seq - 1} are missing")
            else:
                verdict.problems.append(f"record {row.seq} is out of order")
        if not _signed(key, prev_mac, row):
            verdict.problems.append(
                f"record {row.seq} does not match its MAC: edited, moved, or its predecessor "
                "was removed"
            )
        if head is not None and row.seq == head[0] and not hmac.compare_digest(row.mac, head[1]):
            verdict.problems.append(f"record {head[0]} differs from the head anchor")
        prev_mac, expected = row.mac, row.seq + 1
    if head is not None and head[0] > expected - 1:
        verdict.problems.append(f"records {expected}..{head[0]} were cut off the end")
    return verdict


def _sd_escape(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _msgid(action: str) -> str:
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in action)
    return cleaned[:32] or "-"


def syslog_line(row, hostname: str | None = None) -> str:
    """One record as an RFC 5424 message (facility 10, security/authorization).

    The structured-data ID uses 32473, the documentation enterprise number of RFC 5612;
    a site with its own IANA enterprise number should substitute it.
    """
    severity = 5 if row.outcome == "success" else 4
    pri = 10 * 8 + severity
    stamp = datetime.fromtimestamp(row.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    host = _msgid(hostname or socket.gethostname())[:255]
    params = {
        "seq": row.seq,
        "who": row.who,
        "role": row.role,
        "outcome": OUTCOMES.get(row.outcome, 8),
        "patient": row.patient,
        "study": row.study,
        "source": row.source,
        "mac": row.mac,
    }
    sd = " ".join(f'{k}="{_sd_escape(v)}"' for k, v in params.items() if v is not None)
    line = f"<{pri}>1 {stamp} {host} tessera - {_msgid(row.action)} [audit@32473 {sd}]"
    if row.detail:
        detail = row.detail.replace("\n", " ")
        line += " " + (detail if detail.isascii() else "\ufeff" + detail)
    return line


async def export_syslog(
    engine: AsyncEngine, since_seq: int = 0, hostname: str | None = None
) -> AsyncIterator[str]:
    async for row in _rows(engine):
        if row.seq > since_seq:
            yield syslog_line(row, hostname)


async def latest(engine: AsyncEngine, action: str):
    """The newest record of ``action``, or None (one look in the index on action and seq)."""
    query = select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.seq.desc())
    async with engine.connect() as conn:
        return (await conn.execute(query.limit(1))).first()
