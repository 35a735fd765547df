"""The durable forward queue: every state change is one short transaction on the index.

States: pending -> in_flight -> done | pending (retry later) | dead; pending -> cancelled;
dead/cancelled/pending -> pending again through :meth:`ForwardQueue.retry`. In flight, a task is
leased to one node (hub/forward/README.md, "Several nodes").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.archive import Indexed, InstanceRef
from hub.forward.config import RetryPolicy
from hub.forward.metrics import Stay
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
    lease_owner: str | None = None  # while in flight: the node sending it
    lease_expires_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


async def _serialize_claims(conn: AsyncConnection, target: str) -> None:
    """Claims of one target wait for each other until their transaction ends, so two nodes
    cannot both find the target idle. PostgreSQL: a transaction-scoped advisory lock on the
    target's name. SQLite has one writer at a time, and one node per index."""
    if conn.dialect.name == "postgresql":
        key = func.hashtext(f"tessera.forward.{target}")
        await conn.execute(select(func.pg_advisory_xact_lock(key)))


_sending = forward_tasks.alias("sending")


def _not_sending(now: float) -> ColumnElement[bool]:
    """No node holds a live lease on a task of the row's target."""
    return ~exists().where(
        _sending.c.target == forward_tasks.c.target,
        _sending.c.state == "in_flight",
        _sending.c.lease_expires_at >= now,
    )


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
    """The queue as one node sees it. The worker side (claim, renew, finish, reap) needs the
    node's id: a task in flight is leased to one node until ``lease_expires_at``, and a node
    renews the leases of what it is sending. The operator side needs no node."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], float] = time.time,
        *,
        node: str | None = None,
        lease_seconds: float = 10.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.node = node
        self.lease_seconds = lease_seconds

    # -- worker side -------------------------------------------------------------------
    def _owner(self) -> str:
        if not self.node:
            raise RuntimeError("this forward queue has no node id: it cannot claim tasks")
        return self.node

    async def requeue_own(self) -> int:
        """At start: what this node had in flight when it stopped is certainly not being sent
        any more, so it is pending again at once (at-least-once)."""
        return await self._release(forward_tasks.c.lease_owner == self._owner())

    async def reap_expired(self) -> int:
        """Tasks whose lease ran out (their node stopped renewing: it died, hung or lost the
        index) are pending again, whoever held them. In flight without a lease: claimed by a
        version before leases, so nobody holds it."""
        expired = or_(
            forward_tasks.c.lease_expires_at < self.clock(),
            forward_tasks.c.lease_expires_at.is_(None),
        )
        return await self._release(expired)

    async def _release(self, which: ColumnElement[bool]) -> int:
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(forward_tasks)
                .where(forward_tasks.c.state == "in_flight", which)
                .values(state="pending", updated_at=self.clock(), **NO_LEASE)
            )
            return res.rowcount or 0

    async def renew(self, task_ids: Iterable[int]) -> int:
        """Extend the leases this node still holds on ``task_ids``; returns how many it held."""
        ids = list(task_ids)
        if not ids:
            return 0
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(forward_tasks)
                .where(forward_tasks.c.id.in_(ids), self._held())
                .values(lease_expires_at=self.clock() + self.lease_seconds)
            )
            return res.rowcount or 0

    def _held(self) -> ColumnElement[bool]:
        return and_(
            forward_tasks.c.state == "in_flight", forward_tasks.c.lease_owner == self._owner()
        )

    async def due_targets(self, targets: Iterable[str]) -> list[str]:
        """Those of ``targets`` with due tasks that no node is sending to."""
        wanted = list(targets)
        if not wanted:
            return []
        now = self.clock()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(forward_tasks.c.target)
                .where(
                    forward_tasks.c.state == "pending",
                    forward_tasks.c.target.in_(wanted),
                    forward_tasks.c.next_attempt_at <= now,
                    _not_sending(now),
                )
                .distinct()
            )
            return [r.target for r in rows]

    async def next_due_at(self, targets: Iterable[str]) -> float | None:
        """When the next task of ``targets`` is due; a target another node is sending to is
        left to it (looked at again at the next scan)."""
        now = self.clock()
        async with self.engine.connect() as conn:
            return await conn.scalar(
                select(func.min(forward_tasks.c.next_attempt_at)).where(
                    forward_tasks.c.state == "pending",
                    forward_tasks.c.target.in_(list(targets)),
                    _not_sending(now),
                )
            )

    async def claim(self, target: str, limit: int) -> list[Task]:
        """Lease up to ``limit`` due tasks of one target to this node and return them, oldest
        first. Nothing while a live lease on a task of that target is held, by any node: one
        batch per target in flight across the cluster, as with one node."""
        owner, now = self._owner(), self.clock()
        async with self.engine.begin() as conn:
            await _serialize_claims(conn, target)
            ids = (
                await conn.scalars(
                    select(forward_tasks.c.id)
                    .where(
                        forward_tasks.c.state == "pending",
                        forward_tasks.c.target == target,
                        forward_tasks.c.next_attempt_at <= now,
                        _not_sending(now),
                    )
                    .order_by(forward_tasks.c.next_attempt_at, forward_tasks.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)  # dropped on SQLite (one writer anyway)
                )
            ).all()
            if not ids:
                return []
            # still pending: on SQLite the select above locks nothing, and another claim or
            # an operator's cancel may have changed some of these meanwhile
            await conn.execute(
                update(forward_tasks)
                .where(forward_tasks.c.id.in_(ids), forward_tasks.c.state == "pending")
                .values(
                    state="in_flight",
                    updated_at=now,
                    lease_owner=owner,
                    lease_expires_at=now + self.lease_seconds,
                )
            )
            rows = await conn.execute(
                select(forward_tasks)
                .where(forward_tasks.c.id.in_(ids), self._held())
                .order_by(forward_tasks.c.next_attempt_at, forward_tasks.c.id)
            )
            return [_task(r) for r in rows]

    async def finish(self, task: Task, outcome: Outcome, policy: RetryPolicy) -> str | None:
        """Record one attempt; returns the new state, or None when this node no longer holds
        the task (its lease ran out and it was requeued, perhaps sent by another node): the
        outcome is then dropped, the task's current state is the other node's to write."""
        now = self.clock()
        attempts = task.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status": outcome.status,
            "last_error": outcome.message or None,
            "updated_at": now,
            **NO_LEASE,
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
            res = await conn.execute(
                update(forward_tasks)
                .where(forward_tasks.c.id == task.id, self._held())
                .values(**values)
            )
        return values["state"] if res.rowcount else None

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

    async def stays(self, since: float, until: float) -> dict[str, list[Stay]]:
        """{target: stays} of the tasks in the system at some time within [since, until];
        cancelled tasks were never offered to their target and are left out."""
        c = forward_tasks.c
        query = select(c.target, c.created_at, c.finished_at).where(
            c.state != "cancelled",
            c.created_at <= until,
            or_(c.finished_at.is_(None), c.finished_at >= since),
        )
        result: dict[str, list[Stay]] = {}
        async with self.engine.connect() as conn:
            for row in await conn.execute(query):
                result.setdefault(row.target, []).append(Stay(row.created_at, row.finished_at))
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
