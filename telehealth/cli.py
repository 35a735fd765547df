"""`tessera telehealth settings`: show or change the telehealth settings kept in the index.

A running hub uses the new values from its next session on. Building the parser imports nothing
heavy; the index loads when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# option -> (setting, type); the TURN secret is read from an environment variable, so it is
# never on a command line.
OPTIONS: dict[str, tuple[str, Any]] = {
    "--stun": ("stun_urls", str),
    "--turn": ("turn_urls", str),
    "--turn-credential-seconds": ("turn_credential_seconds", int),
    "--policy": ("ice_transport_policy", str),
    "--max-sessions": ("max_sessions", int),
    "--idle-timeout": ("idle_timeout_seconds", float),
    "--max-clip-seconds": ("max_clip_seconds", float),
    "--jpeg-quality": ("jpeg_quality", int),
}
LISTS = ("--stun", "--turn")


def register(subparsers: Any) -> None:
    telehealth = subparsers.add_parser("telehealth", help="tele-ultrasound settings")
    sub = telehealth.add_subparsers(title="telehealth commands", required=True)
    show = sub.add_parser(
        "settings",
        help="show the settings new sessions use; with options, change them first",
    )
    for option, (key, kind) in OPTIONS.items():
        if option in LISTS:
            show.add_argument(option, dest=key, action="append", metavar="URL")
        elif option == "--policy":
            show.add_argument(option, dest=key, choices=("all", "relay"))
        else:
            show.add_argument(option, dest=key, type=kind)
    show.add_argument("--no-stun", action="store_true", help="remove every STUN server")
    show.add_argument("--no-turn", action="store_true", help="remove every TURN server")
    show.add_argument(
        "--turn-secret-env", metavar="VAR", help="take the TURN shared secret from this variable"
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    # Also accept --data after the command; SUPPRESS keeps a --data given before it.
    show.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="data folder")
    show.set_defaults(func=cmd_settings)


def changes(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the options ask to change; ValueError for a variable that is not set."""
    found = {key: getattr(args, key) for key, _ in OPTIONS.values()}
    found = {key: value for key, value in found.items() if value is not None}
    if args.no_stun:
        found["stun_urls"] = []
    if args.no_turn:
        found["turn_urls"] = []
    if args.turn_secret_env:
        secret = environ.get(args.turn_secret_env)
        if secret is None:
            raise ValueError(f"{args.turn_secret_env} is not set")
        found["turn_secret"] = secret
    return found


def cmd_settings(args: argparse.Namespace) -> int:
    import asyncio

    from hub.cli import settings_from

    settings = settings_from(args)
    try:
        wanted = changes(args, settings.environ)
    except ValueError as exc:
        print(f"telehealth settings: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_settings(settings, wanted, args.json))


async def _settings(settings: Any, wanted: dict[str, Any], as_json: bool) -> int:
    from hub.archive.index import make_engine
    from hub.archive.migrations.runner import prepare
    from hub.audited import audit_command, operator
    from telehealth.live_settings import LiveSettings, SettingsRefused

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    try:
        await prepare(engine, "create")
        live = LiveSettings(engine, settings.telehealth)
        await live.current()
        if wanted:
            try:
                done = await live.change(operator(), wanted, None)
            except SettingsRefused as exc:
                print(f"telehealth settings: {exc}", file=sys.stderr)
                return 1
            await audit_command(
                settings, engine, "admin.telehealth.save", detail=done.audit_detail()
            )
        shown = live.describe()
    finally:
        await engine.dispose()
    if as_json:
        print(json.dumps(shown, indent=2))
    else:
        shown["updated_at"] = time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(shown["updated_at"])
        )
        for key, value in shown.items():
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    return 0
