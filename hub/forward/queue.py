"""The durable forward queue: every state change is one short transaction on the index.

States: pending -> in_flight -> done | pending (retry later) | dead; pending -> cancelled;
dead/cancelled/pending -> pending again through :meth:`ForwardQueue.retry`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.archive import Indexed, InstanceRef
from hub.forward.config import RetryPolicy
from hub.forward.outcome import Outcome
from hub.forward.tables import STATES, forward_tasks

RETRYABLE_STATES = ("dead", "cancelled", "pending")
MANUAL_RULE = "manual"  # the rule name of tasks an operator queued by hand
CANCELLABLE_STATES = ("pending",)


class TaskNotFound(LookupError):
    pass


class TaskStateError(ValueError):
    """The task is not in a state that allows the requested change."""


@dataclass
class Task:
    id: int
    target: str
    rule: str
    sop_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    modality: str
    sha256: str
    state: str
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    lease_owner: str | None = None  # the node sending it, while in flight
    lease_expires_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fresh_start(now: float) -> dict[str, Any]:
    return {"state": "pending", "attempts": 0, "next_attempt_at": now, "finished_at": None}


def _task(row: Any) -> Task:
    return Task(**row._mapping)


def identity(event: Indexed) -> dict[str, str]:
    """The columns of a task that name the instance it sends."""
    return {
        "sop_uid": event.sop_uid,
        "sop_class_uid": event.sop_class_uid,
        "study_uid": event.study_uid,
        "series_uid": event.series_uid,
        "modality": event.modality,
        "sha256": event.sha256,
    }


async def enqueue(
    conn: AsyncConnection, instance: dict[str, str], routes: Iterable[tuple[str, str]], now: float
) -> int:
    """Queue one stored instance (its ``identity``) for each (rule, target); runs inside the
    ingest transaction."""
    rows = [
        {
            "target": target,
            "rule": rule,
            **instance,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for rule, target in routes
    ]
    if rows:
        await conn.execute(insert(forward_tasks), rows)
    return len(rows)


class ForwardQueue:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    # -- worker side -------------------------------------------------------------------
    async def requeue_in_flight(self) -> int:
        """After a restart nothing is in flight: send those again (at-least-once)."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(forward_tasks)
                .where(forward_tasks.c.state == "in_flight")
                .values(state="pending", updated_at=self.clock())
            )
            return res.rowcount or 0

    async def due_targets(self, targets: Iterable[str]) -> list[str]:
        wanted = list(targets)
        if not wanted:
            return []
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(forward_tasks.c.target)
                .where(
                    forward_tasks.c.state == "pending",
                    forward_tasks.c.target.in_(wanted),
                    forward_tasks.c.next_attempt_at <= self.clock(),
                )
                .distinct()
            )
            return [r.target for r in rows]

    async def next_due_at(self, targets: Iterable[str]) -> float | None:
        async with self.engine.connect() as conn:
            return await conn.scalar(
                select(func.min(forward_tasks.c.next_attempt_at)).where(
                    forward_tasks.c.state == "pending",
                    forward_tasks.c.target.in_(list(targets)),
                )
            )

    async def claim(self, target: str, limit: int) -> list[Task]:
        """Mark up to ``limit`` due tasks of one target in flight and return them, oldest first."""
        now = self.clock()
        async with self.engine.begin() as conn:
            ids = (
                await conn.scalars(
                    select(forward_tasks.c.id)
                    .where(
                        forward_tasks.c.state == "pending",
                        forward_tasks.c.target == target,
                        forward_tasks.c.next_attempt_at <= now,
                    )
                    .order_by(forward_tasks.c.next_attempt_at, forward_tasks.c.id)
                    .limit(limit)
                )
            ).all()
            claimed = []
            for task_id in ids:  # row by row: a row another process took meanwhile is skipped
                res = await conn.execute(
                    update(forward_tasks)
                    .where(forward_tasks.c.id == task_id, forward_tasks.c.state == "pending")
                    .values(state="in_flight", updated_at=now)
                )
                if res.rowcount:
                    claimed.append(task_id)
            if not claimed:
                return []
            rows = await conn.execute(
                select(forward_tasks)
                .where(forward_tasks.c.id.in_(claimed))
                .order_by(forward_tasks.c.next_attempt_at, forward_tasks.c.id)
            )
            return [_task(r) for r in rows]

    async def finish(self, task: Task, outcome: Outcome, policy: RetryPolicy) -> str:
        """Record one attempt; returns the new state."""
        now = self.clock()
        attempts = task.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status": outcome.status,
            "last_error": outcome.message or None,
            "updated_at": now,
        }
        if outcome.verdict == "done":
            values.update(state="done", finished_at=now)
        elif outcome.verdict == "untried":
            values.update(state="pending", attempts=task.attempts, next_attempt_at=now)
        elif outcome.verdict == "retry" and attempts < policy.max_attempts:
            values.update(state="pending", next_attempt_at=now + policy.delay(attempts))
        else:
            if outcome.verdict == "retry":
                values["last_error"] = f"gave up after {attempts} attempts: {outcome.message}"
            values.update(state="dead", finished_at=now)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(forward_tasks)
                .where(forward_tasks.c.id == task.id, forward_tasks.c.state == "in_flight")
                .values(**values)
            )
        return values["state"]

    # -- operator side -----------------------------------------------------------------
    async def list(
        self,
        state: str | None = None,
        target: str | None = None,
        sop_uid: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Task]:
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r}; one of {', '.join(STATES)}")
        query = select(forward_tasks).order_by(forward_tasks.c.id).limit(limit).offset(offset)
        if state:
            query = query.where(forward_tasks.c.state == state)
        if target:
            query = query.where(forward_tasks.c.target == target)
        if sop_uid:
            query = query.where(forward_tasks.c.sop_uid == sop_uid)
        async with self.engine.connect() as conn:
            return [_task(r) for r in await conn.execute(query)]

    async def counts(self) -> dict[str, dict[str, int]]:
        """{target: {state: count}} over the whole queue."""
        query = select(
            forward_tasks.c.target, forward_tasks.c.state, func.count().label("n")
        ).group_by(forward_tasks.c.target, forward_tasks.c.state)
        result: dict[str, dict[str, int]] = {}
        async with self.engine.connect() as conn:
            for row in await conn.execute(query):
                result.setdefault(row.target, {})[row.state] = row.n
        return result

    async def get(self, task_id: int) -> Task:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(forward_tasks).where(forward_tasks.c.id == task_id))
            ).first()
        if row is None:
            raise TaskNotFound(f"no forward task {task_id}")
        return _task(row)

    async def retry(self, task_id: int) -> Task:
        """Send again as soon as the worker gets to it, with a fresh attempt budget."""
        return await self._transition(
            task_id, RETRYABLE_STATES, _fresh_start(self.clock()), "retry"
        )

    async def purge_finished(self, older_than: float) -> int:
        """Delete done and cancelled tasks finished more than ``older_than`` seconds ago; dead
        letters stay until someone retries or cancels them."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                delete(forward_tasks).where(
                    forward_tasks.c.state.in_(("done", "cancelled")),
                    forward_tasks.c.finished_at < self.clock() - older_than,
                )
            )
            return res.rowcount or 0

    async def send_instances(self, refs: Iterable[InstanceRef], target: str) -> int:
        """Queue stored instances for one target now, whatever the rules say (an operator's
        "send this study"); returns how many."""
        now = self.clock()
        records = [
            {
                "sop_uid": ref.sop_instance_uid,
                "sop_class_uid": ref.sop_class_uid,
                "study_uid": ref.study_uid,
                "series_uid": ref.series_uid,
                "modality": "",
                "sha256": ref.sha256,
            }
            for ref in refs
        ]
        async with self.engine.begin() as conn:
            for record in records:
                await enqueue(conn, record, [(MANUAL_RULE, target)], now)
        return len(records)

    async def retry_dead(self, target: str | None = None) -> int:
        """Retry every dead letter, of one target or of all; returns how many."""
        stmt = (
            update(forward_tasks)
            .where(forward_tasks.c.state == "dead")
            .values(updated_at=self.clock(), **_fresh_start(self.clock()))
        )
        if target:
            stmt = stmt.where(forward_tasks.c.target == target)
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount or 0

    async def cancel(self, task_id: int) -> Task:
        return await self._transition(
            task_id,
            CANCELLABLE_STATES,
            {"state": "cancelled", "finished_at": self.clock(), "last_error": "cancelled"},
            "cancel",
        )

    async def _transition(
        self, task_id: int, allowed: tuple[str, ...], values: dict[str, Any], action: str
    ) -> Task:
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(forward_tasks)
                .where(forward_tasks.c.id == task_id, forward_tasks.c.state.in_(allowed))
                .values(updated_at=self.clock(), **values)
            )
            changed = res.rowcount
        task = await self.get(task_id)
        if not changed:
            raise TaskStateError(
                f"cannot {action} forward task {task_id}: it is {task.state} "
                f"(only {' or '.join(allowed)} tasks can be changed this way)"
            )
        return task
