"""The forwarder: queues stored instances and delivers them to their targets.

:meth:`Forwarder.install` registers the enqueue hook on the archive (inside the ingest
transaction) before anything is ingested; :meth:`Forwarder.start` runs the delivery loop.
At most one batch per target is in flight, across all nodes of the index; targets are served
in parallel. pynetdicom runs in a dedicated thread pool, so a slow PACS never blocks the event
loop. A claimed task is leased to this node; the lease keeper renews the leases of what is being
sent and returns expired ones (of any node) to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.archive import Archive, Indexed
from hub.config import ClusterSettings
from hub.forward import dimse_sender, stow_sender
from hub.forward.config import DimseTarget, ForwardConfig, StowTarget, Target
from hub.forward.configsource import ConfigSource
from hub.forward.outcome import Outcome
from hub.forward.queue import ForwardQueue, Task, enqueue, identity
from hub.tasks import cancel_and_wait

log = logging.getLogger(__name__)

STOP_GRACE = 30.0  # seconds to let batches in flight finish on shutdown
RECORD_RETRY_PAUSES = (0.5, 2.0, 5.0)
PURGE_EVERY = 3600.0  # seconds between deletions of long-finished tasks
SENDER_THREADS = 16  # targets sent to at once, at most; the rest wait their turn


class Forwarder:
    def __init__(self, archive: Archive, source: ConfigSource, cluster: ClusterSettings) -> None:
        self.archive = archive
        self.source = source
        self.cluster = cluster
        self.queue = ForwardQueue(archive.engine)  # leased to a node by start()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._held: set[int] = set()  # ids of the tasks this node is sending
        self._turns: dict[str, asyncio.Task[None]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._installed = False

    @property
    def config(self) -> ForwardConfig:
        """As last read from the index (``source.current()`` reads it again)."""
        return self.source.config

    # -- life cycle ----------------------------------------------------------------------
    def install(self) -> None:
        """Queue forwards for every instance ingested from now on."""
        if not self._installed:
            self.archive.add_indexed_hook(self._on_indexed)
            self.archive.subscribe(self._on_stored)
            self._installed = True

    async def start(self, node: str) -> None:
        """Send as ``node``: the id its claims carry, kept across restarts."""
        self.install()
        self.queue = ForwardQueue(
            self.archive.engine, node=node, lease_seconds=self.cluster.lease_seconds
        )
        returned = await self.queue.requeue_own()
        if returned:
            log.info("forward: %d task(s) interrupted by a restart are pending again", returned)
        if not (await self.source.current()).enabled:
            return
        # Tasks of a target removed from the configuration wait, visible, until it returns.
        self._executor = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="forward")
        self._lease_task = asyncio.create_task(self._keep_leases(), name="forward-leases")
        self._loop_task = asyncio.create_task(self._run(), name="forward-loop")

    async def stop(self) -> None:
        await cancel_and_wait(self._loop_task)
        self._loop_task = None
        if self._turns:
            # A turn records its outcomes before it ends; one that does not finish in time
            # stays in flight in the index, sent again after this node's next start or by
            # another node once its lease runs out.
            _, late = await asyncio.wait(list(self._turns.values()), timeout=STOP_GRACE)
            for turn in late:
                turn.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        # renewed until here; the rest expire, or wait for us
        await cancel_and_wait(self._lease_task)
        self._lease_task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def wake(self) -> None:
        self._wake.set()

    # -- archive hooks -----------------------------------------------------------------
    async def _on_indexed(self, conn: AsyncConnection, event: Indexed) -> None:
        routes = (await self.source.current(conn)).targets_for(event)
        if routes:
            await enqueue(conn, identity(event), routes, time.time())

    async def _on_stored(self, event: Indexed) -> None:
        self._wake.set()

    # -- leases ------------------------------------------------------------------------
    async def _keep_leases(self) -> None:
        """Every heartbeat: one renewal for everything held, then the expired leases of any
        node back to the queue."""
        while True:
            try:
                await self.queue.renew(set(self._held))  # a lost one shows at its finish
                if await self.queue.reap_expired():
                    log.info("forward: tasks whose lease ran out are pending again")
                    self._wake.set()
            except SQLAlchemyError:
                log.warning("forward: cannot renew or reap leases", exc_info=True)
            await asyncio.sleep(self.cluster.heartbeat_seconds)

    # -- delivery loop -----------------------------------------------------------------
    async def _run(self) -> None:
        next_purge = 0.0
        while True:
            self._wake.clear()
            try:
                await self.source.current()
                if time.monotonic() >= next_purge:
                    await self.queue.purge_finished(self.config.keep_finished_days * 86400)
                    next_purge = time.monotonic() + PURGE_EVERY
                await self._dispatch()
                delay = await self._idle_delay()
            except Exception:
                log.exception("forward: queue scan failed")
                delay = self.config.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def _idle_targets(self) -> list[str]:
        return [name for name in self.config.targets if name not in self._turns]

    async def _dispatch(self) -> None:
        for name in await self.queue.due_targets(self._idle_targets()):
            turn = asyncio.create_task(
                self._turn(self.config.targets[name]), name=f"forward-{name}"
            )
            self._turns[name] = turn
            turn.add_done_callback(lambda _t, n=name: self._turn_ended(n))

    def _turn_ended(self, name: str) -> None:
        self._turns.pop(name, None)
        self._wake.set()

    async def _idle_delay(self) -> float:
        idle = self._idle_targets()
        next_due = await self.queue.next_due_at(idle) if idle else None
        if next_due is None:
            return self.config.poll_interval
        return min(self.config.poll_interval, max(0.0, next_due - time.time()))

    async def _turn(self, target: Target) -> None:
        try:
            tasks = await self.queue.claim(target.name, self.config.batch_size)
        except SQLAlchemyError:
            log.exception("forward: cannot claim tasks of %s", target.name)
            return
        if not tasks:
            return
        self._held.update(t.id for t in tasks)
        try:
            await self._finish_turn(target, tasks)
        finally:
            self._held.difference_update(t.id for t in tasks)

    async def _finish_turn(self, target: Target, tasks: list[Task]) -> None:
        try:
            outcomes = await self._deliver(target, tasks)
        except Exception as exc:
            log.exception("forward: delivery to %s failed unexpectedly", target.name)
            outcomes = [Outcome.retry(f"internal error: {exc!r}")] * len(tasks)
        failed: dict[str, list[str]] = {}
        for task, outcome in zip(tasks, outcomes, strict=True):
            state = await self._record(task, outcome)
            self._held.discard(task.id)
            if state is None:
                log.info("forward: task %d was requeued meanwhile; its outcome is dropped", task.id)
                continue
            if state in ("done", "dead"):
                await self._audit_export(target, task, state, outcome)
            if state != "done" and outcome.verdict != "untried":
                failed.setdefault(state, []).append(outcome.message)
        for state, messages in failed.items():  # one line per turn, not one per object
            count, first = len(messages), messages[0]
            log.warning("forward: %d object(s) to %s -> %s: %s", count, target.name, state, first)

    async def _audit_export(self, target: Target, task: Task, state: str, outcome: Outcome) -> None:
        """Every object that leaves the hub (or finally fails to) is an export in the audit
        trail. A hub run without the security package (some tests) has no trail to write."""
        from hub.security.audit_trail import audit

        try:
            await audit(
                self.archive.engine,
                who="forwarder",
                role="system",
                action="forward.export",
                outcome="success" if state == "done" else "failure",
                study=task.study_uid,
                source=target.name,
                detail={"sop": task.sop_uid, "task": task.id, "message": outcome.message},
            )
        except RuntimeError:
            log.debug("forward: no audit trail attached")

    async def _record(self, task: Task, outcome: Outcome) -> str | None:
        """Store the outcome, riding out a briefly unavailable index; a task whose outcome
        cannot be stored stays in flight until its lease runs out, and is then sent again.
        None: the lease was lost (``ForwardQueue.finish``)."""
        for pause in RECORD_RETRY_PAUSES:
            try:
                return await self.queue.finish(task, outcome, self.config.retry)
            except SQLAlchemyError:
                log.exception("forward: cannot record the outcome of task %d", task.id)
                await asyncio.sleep(pause)
        return "in_flight"

    async def _deliver(self, target: Target, tasks: list[Task]) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        outcomes: list[Outcome | None] = [None] * len(tasks)
        async with contextlib.AsyncExitStack() as files:
            paths: dict[int, Path] = {}
            for i, task in enumerate(tasks):
                try:
                    paths[i] = await files.enter_async_context(
                        self.archive.store.materialize(task.sha256)
                    )
                except OSError as exc:
                    outcomes[i] = Outcome.dead(f"stored object cannot be read: {exc}")
            if isinstance(target, DimseTarget):
                sent = await loop.run_in_executor(
                    self._executor, self._send_dimse, target, list(paths.values())
                )
            else:
                assert isinstance(target, StowTarget)
                sent = await self._send_stow(target, tasks, paths)
            for i, outcome in zip(paths, sent, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    async def _send_stow(
        self, target: StowTarget, tasks: list[Task], paths: dict[int, Path]
    ) -> list[Outcome]:
        async with stow_sender.session_for(target, self.config.timeouts) as session:
            return [
                await stow_sender.send_one(
                    session, target, path, tasks[i].sop_uid, self.config.timeouts
                )
                for i, path in paths.items()
            ]

    def _send_dimse(self, target: DimseTarget, paths: list[Path]) -> list[Outcome]:
        """Blocking: runs in the forward thread pool."""
        return dimse_sender.send_batch(target, paths, self.config.timeouts)
