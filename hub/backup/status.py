"""What an administrator asks of scheduled backups (``GET /api/backup/status``), from what every
node can read: the last scheduled run from the audit trail (its record holds the outcome, the
counts and the error, even when the target could not be written), the newest backup and
verification from the target's own manifests and records (also those of ``tessera backup``).
The target's files are reported as they are; ``tessera backup verify`` is what checks them.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.backup.target import TargetError, open_target
from hub.config import BackupSettings

ACTION = "backup.run"  # the audit action of a scheduled run
LEASE = "backup"
VERIFY = "verify"
SHOWN_PROBLEMS = 20


async def last_run(engine: AsyncEngine) -> dict[str, Any] | None:
    """The outcome of the last scheduled run, as ``hub.backup.scheduled`` reported it."""
    from hub.security.audit_trail import latest

    row = await latest(engine, ACTION)
    if row is None:
        return None
    try:
        detail = json.loads(row.detail or "{}")
    except ValueError:  # a record clipped to the trail's size limit
        detail = {}
    return detail | {"outcome": row.outcome, "node": row.source}


def next_run(settings: BackupSettings, run: dict[str, Any] | None, now: float) -> float | None:
    """When the next run is due: an interval after the last one started; at once if none has."""
    if not settings.scheduled:
        return None
    if run is None or "started" not in run:
        return now
    return _seconds(run["started"]) + settings.interval_seconds


async def backup_status(settings: BackupSettings, engine: AsyncEngine) -> dict[str, Any]:
    from hub.serve.leases import holder

    now = time.time()
    run = await last_run(engine)
    status: dict[str, Any] = {
        "target": settings.target,
        "schedule": {
            "interval_hours": settings.interval_hours if settings.scheduled else None,
            "verify_read_percent": settings.verify_read_percent,
        },
        "held_by": await holder(engine, LEASE),
        "last_run": _aged(run, "ended", now),
        "last_backup": None,
        "last_verify": None,
        "target_error": None,
    }
    if settings.target is not None:
        try:
            backup, verify = await _target_records(settings)
            status["last_backup"] = _aged(backup, "at", now)
            status["last_verify"] = _aged(verify, "at", now)
        except (OSError, ValueError, KeyError, TargetError) as exc:
            status["target_error"] = f"{type(exc).__name__}: {exc}"
    due = next_run(settings, run, now)
    status["next_run"] = _iso(max(due, now)) if due is not None else None
    backup = status["last_backup"]
    status["stale"] = settings.scheduled and (
        backup is None or backup["age_seconds"] > 2 * settings.interval_seconds
    )
    return status


async def _target_records(settings: BackupSettings) -> tuple[dict | None, dict | None]:
    assert settings.target is not None
    target = open_target(settings.target, settings)
    try:
        names = await target.manifest_names()
        verifications = await target.record_names(VERIFY)
        backup = verify = None
        if names:
            manifest = json.loads(await target.read_manifest(names[-1]))["manifest"]
            backup = {
                "name": manifest["name"],
                "at": manifest["created"],
                "objects": manifest["blob_count"],
                "bytes": manifest["blob_bytes"],
                "unreadable": len(manifest.get("unreadable", [])),
            }
        if verifications:
            record = json.loads(await target.read_record(verifications[-1]))["verification"]
            verify = {
                "at": record["at"],
                "outcome": "clean" if record["clean"] else "problems",
                "backup": record["latest"],
                "objects": record["objects"],
                "read": record["read"],
                "problems": record["problems"][:SHOWN_PROBLEMS],
            }
        return backup, verify
    finally:
        await target.close()


def _aged(record: dict[str, Any] | None, key: str, now: float) -> dict[str, Any] | None:
    if record is None or key not in record:
        return record
    return record | {"age_seconds": round(now - _seconds(record[key]), 1)}


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()
