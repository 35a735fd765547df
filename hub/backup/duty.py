"""Scheduled backups: the duty of the node that holds the ``backup`` lease (``hub.serve.leases``),
so that two nodes never back up to the target at once.

Every ``backup.interval_hours`` (counted from the start of the last run, whichever node ran it,
so a restart or a change of holder neither skips a run nor repeats one), one run of
``hub.backup.scheduled`` in a child process: a backup, then the next turn of the rolling verify.
The child is killed when the lease is lost or the server stops; its manifest is written last,
so a killed run leaves none. Each run's outcome is logged and written to the audit trail, where
every node reads it (``hub.backup.status``); a failed run is retried at the next interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.backup.status import ACTION, last_run, next_run
from hub.config import Settings

log = logging.getLogger(__name__)

SHOWN_ITEMS = 5  # problems and damaged objects named in the audit record (it has a size limit)


class BackupDuty:
    def __init__(self, settings: Settings, engine: AsyncEngine, node: str) -> None:
        self.settings, self.engine, self.node = settings, engine, node

    async def run(self) -> None:
        due = next_run(self.settings.backup, await last_run(self.engine), time.time())
        assert due is not None, "the duty runs only with a schedule"
        while True:
            await asyncio.sleep(max(0.0, due - time.time()))
            due = time.time() + self.settings.backup.interval_seconds
            await self.once()

    async def once(self) -> dict[str, Any]:
        outcome = await self._in_child()
        if outcome["outcome"] == "success":
            log.info(
                "backup %s: %d objects, %d copied (%d bytes); verify clean",
                outcome["manifest"],
                outcome["objects"],
                outcome["copied"],
                outcome["copied_bytes"],
            )
        else:
            log.error("the scheduled backup failed: %s", _what_failed(outcome))
        await self._audit(outcome)
        return outcome

    async def _in_child(self) -> dict[str, Any]:
        started = _now()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hub.backup.scheduled",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return _failed(started, f"the backup process did not start: {exc}")
        try:
            out, err = await proc.communicate(self.settings.to_json().encode() + b"\n")
        except asyncio.CancelledError:  # the lease was lost, or the server stops
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            raise
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            said = err.decode(errors="replace").strip().splitlines()
            last = said[-1] if said else "no output"
            return _failed(started, f"the backup process exited with {proc.returncode}: {last}")

    async def _audit(self, outcome: dict[str, Any]) -> None:
        from hub.security.audit_trail import audit

        damaged = outcome.get("unreadable", [])
        detail = outcome | {"unreadable": len(damaged)}
        if damaged:
            detail["damaged"] = damaged[:SHOWN_ITEMS]
        if "verify" in outcome:
            verify = outcome["verify"]
            detail["verify"] = verify | {"problems": verify["problems"][:SHOWN_ITEMS]}
        try:
            await audit(
                self.engine,
                who="backup",
                role="system",
                action=ACTION,
                outcome=outcome["outcome"],
                source=self.node,
                detail=detail,
            )
        except (RuntimeError, SQLAlchemyError) as exc:  # no trail attached, or the index is away
            log.error("the outcome of the scheduled backup was not audited: %s", exc)


def _failed(started: str, error: str) -> dict[str, Any]:
    return {"started": started, "ended": _now(), "outcome": "failure", "error": error}


def _what_failed(outcome: dict[str, Any]) -> str:
    if "error" in outcome:
        return outcome["error"]
    problems = outcome.get("verify", {}).get("problems", [])
    damaged = len(outcome.get("unreadable", []))
    return f"{damaged} object(s) unreadable at the source; verify: {problems[:SHOWN_ITEMS]}"


def _now() -> str:
    return datetime.now(UTC).isoformat()
