"""`tessera forward list|show|retry|cancel|send|targets`: the forward queue from the command line
(``target``, ``rule`` and ``echo`` edit and test the configuration: hub.forward.config_cli).

Works on the index directly, with or without the server running; a running server picks up
retried tasks at its next queue scan (``poll_interval``). Building the parser imports nothing
heavy; the queue and the archive load when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.config import Settings
from hub.forward import config_cli
from hub.forward.states import STATES
from hub.index_command import index_command

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from hub.forward.config import ForwardConfig
    from hub.forward.queue import ForwardQueue, Task


def register(subparsers: Any) -> None:
    forward = subparsers.add_parser("forward", help="inspect and manage the forward queue")
    commands = forward.add_subparsers(title="forward commands", required=True)

    ls = commands.add_parser("list", help="list queued tasks")
    ls.add_argument("--state", choices=STATES)
    ls.add_argument("--target")
    ls.add_argument("--sop", help="only tasks of this SOP Instance UID")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_command(cmd_list))

    show = commands.add_parser("show", help="show one task with its last error")
    show.add_argument("id", type=int)
    show.set_defaults(func=_command(cmd_show))

    retry = commands.add_parser("retry", help="send dead, cancelled or waiting tasks again now")
    retry.add_argument("ids", type=int, nargs="*")
    retry.add_argument("--dead", action="store_true", help="retry every dead letter")
    retry.add_argument("--target", help="with --dead: only this target's dead letters")
    retry.set_defaults(func=_command(cmd_retry))

    cancel = commands.add_parser("cancel", help="cancel pending tasks")
    cancel.add_argument("ids", type=int, nargs="+")
    cancel.set_defaults(func=_command(cmd_cancel))

    send = commands.add_parser("send", help="queue every instance of a study for a target now")
    send.add_argument("study", help="Study Instance UID")
    send.add_argument("--target", required=True)
    send.set_defaults(func=_command(cmd_send))

    targets = commands.add_parser("targets", help="configured targets and rules, with counts")
    targets.add_argument("--json", action="store_true", help="print JSON")
    targets.set_defaults(func=_command(cmd_targets))

    edits = config_cli.register(commands, _command)
    for command in (ls, show, retry, cancel, send, targets, *edits):
        # Also accept --data after the command; SUPPRESS keeps a --data given before it.
        command.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="data folder")


Handler = Callable[[argparse.Namespace, Settings, "ForwardQueue"], Awaitable[int]]


def _queue(engine: AsyncEngine, _settings: Settings) -> ForwardQueue:
    from hub.forward.queue import ForwardQueue

    return ForwardQueue(engine)


def _command(handler: Handler) -> Callable[[argparse.Namespace], int]:
    return index_command(handler, _queue)


async def cmd_list(args: argparse.Namespace, _settings: Settings, queue: ForwardQueue) -> int:
    tasks = await queue.list(
        state=args.state, target=args.target, sop_uid=args.sop, limit=args.limit
    )
    if args.json:
        print(json.dumps([t.to_json() for t in tasks], indent=2))
        return 0
    print(_row("id", "state", "target", "tries", "next try (UTC)", "SOP Instance UID"))
    for t in tasks:
        print(_row(t.id, t.state, t.target, t.attempts, _when(t), t.sop_uid))
        if t.last_error and t.state in ("pending", "dead"):
            print(f"{'':>8}{t.last_error}")
    if not tasks:
        print("(no tasks)")
    return 0


def _row(*cells: object) -> str:
    task_id, state, target, tries, when, sop = (str(c) for c in cells)
    return f"{task_id:>6}  {state:<9}  {target:<12}  {tries:>5}  {when:<19}  {sop}"


async def cmd_show(args: argparse.Namespace, _settings: Settings, queue: ForwardQueue) -> int:
    from hub.forward.queue import TaskNotFound

    try:
        task = await queue.get(args.id)
    except TaskNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(task.to_json(), indent=2))
    return 0


async def cmd_retry(args: argparse.Namespace, _settings: Settings, queue: ForwardQueue) -> int:
    if args.dead:
        print(f"{await queue.retry_dead(args.target)} dead task(s) queued again")
        return 0
    if not args.ids:
        print("give task ids, or --dead", file=sys.stderr)
        return 2
    return await _each(args.ids, queue.retry, "queued again")


async def cmd_cancel(args: argparse.Namespace, _settings: Settings, queue: ForwardQueue) -> int:
    return await _each(args.ids, queue.cancel, "cancelled")


async def _each(ids: list[int], change: Callable[[int], Awaitable[Task]], done: str) -> int:
    from hub.forward.queue import TaskNotFound, TaskStateError

    failed = 0
    for task_id in ids:
        try:
            await change(task_id)
            print(f"task {task_id}: {done}")
        except (TaskNotFound, TaskStateError) as exc:
            print(exc, file=sys.stderr)
            failed += 1
    return 1 if failed else 0


async def cmd_send(args: argparse.Namespace, settings: Settings, queue: ForwardQueue) -> int:
    from hub.archive import Archive, NotFound
    from hub.stores import open_store

    config = await _config_or_none(settings, queue)
    if config is None:
        return 1
    if args.target not in config.targets:
        print(
            f"unknown target {args.target!r} (targets: {', '.join(config.targets)})",
            file=sys.stderr,
        )
        return 1
    archive = await Archive.open(settings, store=open_store(settings))
    try:
        refs = await archive.instances(args.study)
    except NotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        await archive.close()
    count = await queue.send_instances(refs, args.target)
    print(f"{count} instance(s) of study {args.study} queued for {args.target}")
    return 0


async def cmd_targets(args: argparse.Namespace, settings: Settings, queue: ForwardQueue) -> int:
    config = await _config_or_none(settings, queue)
    if config is None:
        return 1
    described = config.describe(await queue.counts())
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for t in described["targets"]:
        where = t["url"] if t["type"] == "stow" else f"{t['called_ae']}@{t['host']}:{t['port']}"
        tasks = ", ".join(f"{n} {s}" for s, n in sorted(t["tasks"].items())) or "no tasks"
        print(f"{t['name']}: {t['type']} {where} ({tasks})")
    for rule in described["rules"]:
        match = "; ".join(f"{k}={','.join(v)}" for k, v in rule["match"].items()) or "everything"
        print(f"rule {rule['name']}: {match} -> {', '.join(rule['targets'])}")
    for name, tasks in sorted(described["unconfigured"].items()):
        print(f"{name}: not configured any more ({tasks})")
    return 0


async def _config_or_none(settings: Settings, queue: ForwardQueue) -> ForwardConfig | None:
    from hub.forward.config import ConfigError
    from hub.forward.configsource import ConfigSource

    try:
        return await ConfigSource(queue.engine, settings).current()
    except ConfigError as exc:
        print(f"forward configuration error: {exc}", file=sys.stderr)
        return None


def _when(task: Task) -> str:
    if task.state != "pending":
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(task.next_attempt_at))
