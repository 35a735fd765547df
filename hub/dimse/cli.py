"""`tessera dimse peer set|remove|list|echo`: the DIMSE peers (C-MOVE destinations) in the index.

The same edits as the admin page and ``/api/admin/peers``, with the same checks; each is audited
under the operator's login name. A running hub sends its next C-MOVE by them. Building the
parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.config import Settings

if TYPE_CHECKING:
    from hub.configstore.cached import Change
    from hub.dimse.peers import Edit, PeerSource

Handler = Callable[[argparse.Namespace, Settings, "PeerSource"], Awaitable[int]]


def register(subparsers: Any) -> None:
    dimse = subparsers.add_parser("dimse", help="the DIMSE door's peers")
    commands = dimse.add_subparsers(title="dimse commands", required=True)
    peer = commands.add_parser("peer", help="the peers C-MOVE may send to")
    peer_commands = peer.add_subparsers(title="peer commands", required=True)

    put = peer_commands.add_parser("set", help="add a peer or change its host and port")
    put.add_argument("ae", help="the peer's AE title (the C-MOVE destination)")
    put.add_argument("host")
    put.add_argument("port", type=int)
    put.set_defaults(func=_command(cmd_set))

    drop = peer_commands.add_parser("remove", help="remove a peer")
    drop.add_argument("ae")
    drop.set_defaults(func=_command(cmd_remove))

    ls = peer_commands.add_parser("list", help="the peers, with their versions")
    ls.set_defaults(func=_command(cmd_list))

    echo = peer_commands.add_parser("echo", help="C-ECHO a peer now")
    echo.add_argument("ae")
    echo.set_defaults(func=_command(cmd_echo))
    for command in (put, drop, ls, echo):
        # Also accept --data after the command; SUPPRESS keeps a --data given before it.
        command.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="data folder")


def _command(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import asyncio

        from hub.cli import existing_settings

        settings = existing_settings(args)
        if settings is None:
            return 2
        return asyncio.run(_with_peers(handler, args, settings))

    return run


async def _with_peers(handler: Handler, args: argparse.Namespace, settings: Settings) -> int:
    from hub.archive.index import create_schema, make_engine
    from hub.dimse.peers import settings_peer_source

    engine = make_engine(settings.db_url)
    try:
        await create_schema(engine)
        return await handler(args, settings, settings_peer_source(engine, settings))
    finally:
        await engine.dispose()


async def cmd_set(args: argparse.Namespace, settings: Settings, source: PeerSource) -> int:
    from hub.dimse.peers import PeerError, put_peer

    try:
        edit = put_peer(args.ae, args.host, args.port, None)
    except PeerError as exc:
        print(exc, file=sys.stderr)
        return 2
    return await _edit(settings, source, "admin.peer.save", edit)


async def cmd_remove(args: argparse.Namespace, settings: Settings, source: PeerSource) -> int:
    from hub.dimse.peers import delete_peer

    return await _edit(settings, source, "admin.peer.remove", delete_peer(args.ae, None))


async def _edit(settings: Settings, source: PeerSource, action: str, edit: Edit) -> int:
    from hub.configstore.cli import edit_by_command

    return await edit_by_command(
        settings, source, action, edit, missing="no DIMSE peer", shown=_shown
    )


def _shown(done: Change) -> str:
    if done.new is None:
        return f"peer {done.name}: removed"
    spec = done.new.spec
    return f"peer {done.name}: {spec['host']}:{spec['port']} (version {done.new.version})"


async def cmd_list(_args: argparse.Namespace, _settings: Settings, source: PeerSource) -> int:
    from hub.dimse.peers import listed

    found = (await listed(source))["peers"]
    for peer in found:
        tls = "  TLS" if peer["tls"] else ""
        where = f"{peer['host']}:{peer['port']}"
        print(f"{peer['ae']:<16}  {where:<30}  version {peer['version']}{tls}")
    if not found:
        print("(no peers)")
    return 0


async def cmd_echo(args: argparse.Namespace, settings: Settings, source: PeerSource) -> int:
    from hub.audited import audit_command
    from hub.dimse.peers import echo

    where = (await source.current()).get(args.ae)
    if where is None:
        print(f"no DIMSE peer {args.ae!r}", file=sys.stderr)
        return 1
    ok, detail = await echo(args.ae, where, settings.ae_title, settings.dimse.timeout)
    await audit_command(
        settings, source.engine, "admin.peer.echo", detail={"name": args.ae, "ok": ok}
    )
    print(detail)
    return 0 if ok else 1
