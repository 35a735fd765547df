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
from hub.index_command import index_command

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from hub.configstore.cached import Change
    from hub.dimse.peers import Edit, PeerSource

Handler = Callable[[argparse.Namespace, Settings, "PeerSource"], Awaitable[int]]


def register(subparsers: Any) -> None:
    dimse = subparsers.add_parser("dimse", help="the DIMSE door's peers")
    commands = dimse.add_subparsers(title="dimse commands", required=True)
    peer = commands.add_parser("peer", help="the peers C-MOVE may send to")
    peer_commands = peer.add_subparsers(title="peer commands", required=True)

    put = peer_commands.add_parser("set", help="add a peer or change its host, port or TLS")
    put.add_argument("ae", help="the peer's AE title (the C-MOVE destination)")
    put.add_argument("host")
    put.add_argument("port", type=int)
    tls = put.add_argument_group("TLS towards the peer (left out: as it was)")
    tls.add_argument(
        "--tls", action=argparse.BooleanOptionalAction, help="DICOM over TLS, or plain (--no-tls)"
    )
    tls.add_argument("--ca-file", help="check the peer against this CA (default: the system's)")
    tls.add_argument("--cert-file", help="the hub's client certificate, for a peer that asks")
    tls.add_argument("--key-file", help="the key of --cert-file")
    tls.add_argument(
        "--no-verify", action="store_true", help="do not check the peer's certificate and name"
    )
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


def _peers(engine: AsyncEngine, settings: Settings) -> PeerSource:
    from hub.dimse.peers import settings_peer_source

    return settings_peer_source(engine, settings)


def _command(handler: Handler) -> Callable[[argparse.Namespace], int]:
    return index_command(handler, _peers)


async def cmd_set(args: argparse.Namespace, settings: Settings, source: PeerSource) -> int:
    import asyncio

    from hub.dimse.peers import PeerError, put_peer

    try:
        tls = await asyncio.to_thread(_tls_of, args)
        edit = put_peer(args.ae, args.host, args.port, None, tls)
    except PeerError as exc:
        print(exc, file=sys.stderr)
        return 2
    return await _edit(settings, source, "admin.peer.save", edit)


def _tls_of(args: argparse.Namespace) -> Any:
    """TLS as the options ask for it: UNSET (keep) when none is given; any file or
    --no-verify means TLS. Reads the files."""
    from msgspec import UNSET

    from hub.dimse.peers import PeerError, checked_tls

    given = {
        "ca_file": args.ca_file and str(Path(args.ca_file).resolve()),
        "cert_file": args.cert_file and str(Path(args.cert_file).resolve()),
        "key_file": args.key_file and str(Path(args.key_file).resolve()),
        "verify": not args.no_verify,
    }
    detailed = any(given[k] for k in ("ca_file", "cert_file", "key_file")) or args.no_verify
    if args.tls is False and detailed:
        raise PeerError("--no-tls takes no TLS files or --no-verify")
    if args.tls is None and not detailed:
        return UNSET
    if args.tls is False:
        return None
    return checked_tls({k: v for k, v in given.items() if v is not None})


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
    tls = " TLS" if spec.get("tls") else ""
    return f"peer {done.name}: {spec['host']}:{spec['port']}{tls} (version {done.new.version})"


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
