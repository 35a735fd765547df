"""`tessera forward target|rule|echo`: edit the forwarding targets and rules in the index.

The same edits as the admin page and ``/api/forward/targets|rules``, with the same checks; each
is audited under the operator's login name. A running hub routes by them from its next object.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from hub.config import Settings

if TYPE_CHECKING:
    from hub.configstore.cached import Change
    from hub.forward.queue import ForwardQueue


def register(commands: Any, command: Any) -> list[argparse.ArgumentParser]:
    """Add the commands to ``tessera forward``; ``command`` wraps a handler as cli.py does."""
    target = commands.add_parser("target", help="add, change or remove a forwarding target")
    target_commands = target.add_subparsers(title="target commands", required=True)
    set_target = target_commands.add_parser("set", help="add or replace a target")
    set_target.add_argument("name")
    kind = set_target.add_mutually_exclusive_group(required=True)
    kind.add_argument("--host", help="a DIMSE receiver (with --port and --called-ae)")
    kind.add_argument("--url", help="a DICOMweb base URL (STOW-RS)")
    set_target.add_argument("--port", type=int)
    set_target.add_argument("--called-ae")
    set_target.add_argument("--calling-ae")
    set_target.add_argument("--tls", action="store_true", help="DIMSE over TLS")
    set_target.add_argument("--convert-uncompressed", action="store_true")
    set_target.add_argument("--token-env", help="STOW-RS: the variable holding the bearer token")
    set_target.set_defaults(func=command(cmd_set_target))
    drop_target = target_commands.add_parser("remove", help="remove a target no rule names")
    drop_target.add_argument("name")
    drop_target.set_defaults(func=command(cmd_remove_target))

    rule = commands.add_parser("rule", help="add, change or remove a routing rule")
    rule_commands = rule.add_subparsers(title="rule commands", required=True)
    set_rule = rule_commands.add_parser("set", help="add or replace a rule")
    set_rule.add_argument("name")
    set_rule.add_argument("--target", action="append", required=True, dest="targets")
    for condition in ("modality", "sop-class", "door", "calling-ae"):
        set_rule.add_argument(f"--{condition}", action="append", default=[])
    set_rule.add_argument("--position", type=int, help="place among the rules (default: last)")
    set_rule.set_defaults(func=command(cmd_set_rule))
    drop_rule = rule_commands.add_parser("remove", help="remove a rule")
    drop_rule.add_argument("name")
    drop_rule.set_defaults(func=command(cmd_remove_rule))

    echo = commands.add_parser("echo", help="test a target now (C-ECHO, or a STOW-RS search)")
    echo.add_argument("name")
    echo.set_defaults(func=command(cmd_echo))
    return [set_target, drop_target, set_rule, drop_rule, echo]


async def cmd_set_target(args: argparse.Namespace, settings: Settings, queue: ForwardQueue) -> int:
    from hub.forward.configsource import put_target

    if args.url:
        spec: dict[str, Any] = {"type": "stow", "url": args.url}
        if args.token_env:
            spec["token_env"] = args.token_env
    else:
        if args.port is None or not args.called_ae:
            print("a DIMSE target needs --port and --called-ae", file=sys.stderr)
            return 2
        spec = {"type": "dimse", "host": args.host, "port": args.port, "called_ae": args.called_ae}
        if args.calling_ae:
            spec["calling_ae"] = args.calling_ae
        spec |= {"tls": args.tls, "convert_uncompressed": args.convert_uncompressed}
    return await _edit(settings, queue, "forward.target.save", put_target(args.name, spec, None))


async def cmd_remove_target(
    args: argparse.Namespace, settings: Settings, queue: ForwardQueue
) -> int:
    from hub.forward.configsource import delete_target

    return await _edit(settings, queue, "forward.target.remove", delete_target(args.name, None))


async def cmd_set_rule(args: argparse.Namespace, settings: Settings, queue: ForwardQueue) -> int:
    from hub.forward.configsource import put_rule

    match = {
        key: values
        for key, values in (
            ("modality", args.modality),
            ("sop_class", args.sop_class),
            ("door", args.door),
            ("calling_ae", args.calling_ae),
        )
        if values
    }
    edit = put_rule(args.name, {"targets": args.targets, "match": match}, None, args.position)
    return await _edit(settings, queue, "forward.rule.save", edit)


async def cmd_remove_rule(args: argparse.Namespace, settings: Settings, queue: ForwardQueue) -> int:
    from hub.forward.configsource import delete_rule

    return await _edit(settings, queue, "forward.rule.remove", delete_rule(args.name, None))


async def _edit(settings: Settings, queue: ForwardQueue, action: str, edit: Any) -> int:
    from hub.configstore.cli import edit_by_command
    from hub.forward.configsource import ConfigSource

    source = ConfigSource(queue.engine, settings)
    return await edit_by_command(
        settings, source, action, edit, missing="no such entry", shown=_shown
    )


def _shown(done: Change) -> str:
    what = "removed" if done.new is None else f"saved (version {done.new.version})"
    return f"{done.kind.removeprefix('forward.')} {done.name}: {what}"


async def cmd_echo(args: argparse.Namespace, settings: Settings, queue: ForwardQueue) -> int:
    from hub.forward.configsource import ConfigSource
    from hub.forward.echo import echo

    config = await ConfigSource(queue.engine, settings).current()
    target = config.targets.get(args.name)
    if target is None:
        print(f"no forward target {args.name!r}", file=sys.stderr)
        return 1
    ok, detail = await echo(target, config.timeouts)
    print(detail)
    return 0 if ok else 1
