"""The `tessera` command: serve, demo, import, verify, and the commands each package adds."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hub.config import Settings, SettingsError

if TYPE_CHECKING:
    from hub.archive import Archive
    from hub.archive.verify import Report

# Packages that add their own subcommands through `register(subparsers)`. Every command (and
# --help) builds the whole parser, so these modules import nothing heavy at module level.
COMMAND_MODULES: list[str] = [
    "hub.security.cli",
    "hub.worklist.cli",
    "hub.forward.cli",
    "hub.dimse.cli",
    "hub.db_cli",
    "hub.convert_cli",
    "hub.backup.cli",
    "hub.dose.cli",
    "hub.patients.cli",
    "telehealth.cli",
]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # --help ends here, before logging is loaded
    import logging

    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Imported here, not at the top: `tessera --help` and commands without an index stay light.
        from hub.archive.migrations.runner import SchemaError

        if not isinstance(exc, SchemaError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 3


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: `tessera --data X cmd` and `tessera cmd --data X` both work; neither parser's
    # default overwrites the other's value.
    common.add_argument(
        "--data", type=Path, default=argparse.SUPPRESS, help="data folder (default ./tessera-data)"
    )
    common.add_argument("-v", "--verbose", action="store_true")
    parser = argparse.ArgumentParser(prog="tessera", description=__doc__, parents=[common])
    sub = parser.add_subparsers(title="commands")

    serve = _add(sub, common, "serve", "run the hub")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate for HTTPS")
    serve.add_argument("--tls-key", type=Path, default=None, help="PEM private key for HTTPS")
    serve.add_argument("--dimse-port", type=int, default=None, help="DICOM port (off if unset)")
    serve.add_argument("--ae-title", default=None, help="the hub's AE title (default TESSERA)")
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes answering HTTP: the main one plus readers for DICOMweb reads (default 1)",
    )
    serve.add_argument(
        "--no-upgrade",
        action="store_true",
        help="refuse to start on an index at an older schema revision instead of upgrading it",
    )
    serve.set_defaults(func=cmd_serve)

    demo = _add(sub, common, "demo", "run the hub with sample data over HTTPS")
    demo.add_argument("--host", default=None)
    demo.add_argument("--port", type=int, default=None)
    demo.set_defaults(func=cmd_demo)

    imp = _add(sub, common, "import", "ingest DICOM files and folders")
    imp.add_argument("paths", nargs="+", type=Path)
    imp.set_defaults(func=cmd_import)

    ver = _add(sub, common, "verify", "check the index against the stored files")
    ver.add_argument("--repair", action="store_true", help="quarantine orphans, clear temp files")
    ver.add_argument("--quick", action="store_true", help="check presence only, not hashes")
    ver.set_defaults(func=cmd_verify)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(_Sub(sub, common))
    return parser


class _Sub:
    """Passes the common options to every parser a package adds."""

    def __init__(self, sub, common) -> None:
        self._sub, self._common = sub, common

    def add_parser(self, name: str, **kwargs):
        kwargs.setdefault("parents", [self._common])
        return self._sub.add_parser(name, **kwargs)


def _add(sub, common, name: str, help_text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, parents=[common])


def settings_from(args: argparse.Namespace, **overrides) -> Settings:
    return Settings.from_env(data_dir=getattr(args, "data", None), **overrides)


def existing_settings(args: argparse.Namespace) -> Settings | None:
    """The settings of the hub the command works on; None, saying why, when it has no index
    to work on yet (no database named and no data folder)."""
    settings = settings_from(args)
    if settings.database_url is None and not settings.data_dir.is_dir():
        print(f"no data folder {settings.data_dir} (give it with --data)", file=sys.stderr)
        return None
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from hub.serve.eventloop import run
    from hub.serve.server import serve

    settings = settings_from(
        args,
        host=args.host,
        port=args.port,
        dimse_port=args.dimse_port,
        ae_title=args.ae_title,
        workers=args.workers,
    )
    if bool(args.tls_cert) != bool(args.tls_key):
        print("--tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if settings.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    return run(serve(settings, tls, upgrade=not args.no_upgrade))


def cmd_demo(args: argparse.Namespace) -> int:
    from hub.demo import run_demo
    from hub.serve.eventloop import run

    return run(run_demo(settings_from(args, host=args.host, port=args.port)))


def cmd_import(args: argparse.Namespace) -> int:
    import asyncio

    from hub.importer import import_paths

    return asyncio.run(import_paths(settings_from(args), args.paths))


def cmd_verify(args: argparse.Namespace) -> int:
    import asyncio

    from hub.archive import Archive
    from hub.archive.verify import verify
    from hub.stores import open_store

    async def run() -> int:
        settings = settings_from(args)
        archive = await Archive.open(settings, store=open_store(settings))
        try:
            if not args.repair:
                report = await verify(archive, deep=not args.quick)
            else:
                report = await verify_holding_the_janitor(settings, archive, deep=not args.quick)
        finally:
            await archive.close()
        print(f"checked {report.checked} instances")
        for label, items in (
            ("missing blob", report.missing),
            ("corrupt blob", report.corrupt),
            ("orphan blob", report.orphans),
        ):
            for item in items:
                print(f"{label}: {item}")
        if report.temp_files:
            print(f"interrupted uploads: {report.temp_files} temp file(s)")
        if report.repaired:
            print("repaired: orphans quarantined, temp files removed")
            for sha in report.kept:
                print(f"kept (recent, or named by an ingest meanwhile): {sha}")
            return 1 if report.missing or report.corrupt else 0
        return 0 if report.clean else 1

    return asyncio.run(run())


async def verify_holding_the_janitor(settings: Settings, archive: Archive, *, deep: bool) -> Report:
    """``verify --repair``: repairing orphans is the janitor's duty, done by one process at a
    time through its lease; while a serving node holds it, that node repairs, not this one."""
    import os

    from hub.app import janitor_lease
    from hub.archive.verify import repair_found, scan
    from hub.serve.leases import holder, holding
    from hub.serve.nodes import node_id
    from hub.serve.registry import process_ended

    report = await scan(archive, deep=deep)
    here = node_id(settings)
    lease = janitor_lease(settings, archive, f"repair-{os.getpid()}@{here}"[:64])
    if await holder(archive.engine, lease.name) == here and await process_ended(
        archive.engine, here
    ):
        await lease.free_from(here)  # this data folder's server was killed while holding it
    async with holding(lease, settings.cluster.heartbeat_seconds) as held:
        if held:
            grace = settings.cluster.orphan_grace_seconds
            await repair_found(archive, report, grace=grace, guard=lease)
        else:
            busy = await holder(archive.engine, lease.name) or "another process"
            print(f"not repaired: {busy} holds the janitor duty and repairs itself")
    return report


if __name__ == "__main__":
    sys.exit(main())
