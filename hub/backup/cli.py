"""`tessera backup TARGET`, `tessera backup verify TARGET` and `tessera restore TARGET --to DIR`.

Exit status: 0 when everything is whole; 1 when something is damaged or missing (named in the
output); 2 for a command that cannot start (a target of another hub, a non-empty destination,
a manifest that does not verify).
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime
from pathlib import Path

VERIFY = "verify"


def register(subparsers) -> None:
    backup = subparsers.add_parser(
        "backup",
        help="back up the index and the stored objects to a folder (hot, incremental, signed)",
        description="`tessera backup TARGET` takes a backup; "
        "`tessera backup verify TARGET` checks the target's backups.",
    )
    backup.add_argument("words", nargs="+", metavar="[verify] TARGET")
    backup.add_argument("--parallel", type=int, default=4, help="blobs copied at once")
    reading = backup.add_mutually_exclusive_group()
    reading.add_argument(
        "--read-data", action="store_true", help="verify: read back and hash every blob"
    )
    reading.add_argument(
        "--read-data-subset", metavar="PERCENT", type=_percent, help="verify: hash a sample"
    )
    backup.add_argument(
        "--public-key", type=Path, help="verify: the signing key to trust (default: this hub's)"
    )
    backup.set_defaults(func=cmd_backup)

    restore = subparsers.add_parser(
        "restore", help="restore a backup into a new, empty data folder, then verify it"
    )
    restore.add_argument("target", type=Path)
    restore.add_argument("--to", type=Path, required=True, dest="dest", help="the new data folder")
    which = restore.add_mutually_exclusive_group()
    which.add_argument("--manifest", help="the backup to restore, by name (default: the latest)")
    which.add_argument(
        "--at", type=datetime.fromisoformat, help="the last backup taken at or before this time"
    )
    restore.add_argument(
        "--public-key", type=Path, help="the signing key to trust (default: this hub's)"
    )
    restore.add_argument("--parallel", type=int, default=4, help="blobs copied at once")
    restore.set_defaults(func=cmd_restore)


def _percent(text: str) -> float:
    value = float(text.rstrip("%"))
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError("a percentage between 0 and 100")
    return value / 100


def cmd_backup(args: argparse.Namespace) -> int:
    if args.words[0] == VERIFY and len(args.words) == 2:
        return _run(_verify(args, Path(args.words[1])))
    if len(args.words) != 1:
        print("usage: tessera backup TARGET | tessera backup verify TARGET")
        return 2
    return _run(_backup(args, Path(args.words[0])))


def cmd_restore(args: argparse.Namespace) -> int:
    return _run(_restore(args))


def _run(work) -> int:
    import asyncio

    from hub.backup.manifest import ManifestError
    from hub.backup.restore import RestoreError

    try:
        return asyncio.run(work)
    except (ManifestError, RestoreError) as exc:
        print(f"error: {exc}")
        return 2


async def _backup(args: argparse.Namespace, where: Path) -> int:
    from hub.archive import Archive
    from hub.backup.engine import run_backup
    from hub.backup.target import DirectoryTarget
    from hub.cli import settings_from
    from hub.stores import open_store

    settings = settings_from(args)
    archive = await Archive.open(settings, store=open_store(settings))
    target = DirectoryTarget(where)
    try:
        report = await run_backup(archive, target, parallel=args.parallel)
    finally:
        await target.close()
        await archive.close()
    print(
        f"backup {report.manifest}: {report.blobs} blobs, {report.copied} copied "
        f"({report.copied_bytes / 1e6:.1f} MB) in {report.seconds:.1f} s"
    )
    for item in report.unreadable:
        print(
            f"unreadable: {item['sha256']} ({', '.join(item['sop_instance_uids'])}): {item['reason']}"
        )
    return 1 if report.unreadable else 0


async def _verify(args: argparse.Namespace, where: Path) -> int:
    from hub.backup.check import check_target
    from hub.backup.target import DirectoryTarget

    fraction = 1.0 if args.read_data else (args.read_data_subset or 0.0)
    target = DirectoryTarget(where)
    try:
        key, signer = await _trusted_key(args, target)
        report = await check_target(target, key, read_fraction=fraction, record_with=signer)
    finally:
        await target.close()
    print(
        f"{report.manifests} backups, latest {report.latest}: {report.objects} objects checked, "
        f"{report.read} read back"
    )
    for problem in report.problems:
        print(f"problem: {problem}")
    return 0 if report.clean else 1


async def _restore(args: argparse.Namespace) -> int:
    from hub.backup.restore import restore, write_report
    from hub.backup.target import DirectoryTarget

    target = DirectoryTarget(args.target)
    try:
        key, _ = await _trusted_key(args, target)
        report = await restore(
            target, args.dest, key, name=args.manifest, at=args.at, parallel=args.parallel
        )
    finally:
        await target.close()
    report.verify = await _verify_restored(args.dest)
    path = write_report(args.dest, report)
    print(
        f"restored {report.manifest} to {args.dest}: {report.blobs} blobs, "
        f"{report.bytes / 1e6:.1f} MB in {report.seconds:.1f} s ({report.mb_per_second:.1f} MB/s)"
    )
    for item in report.damaged:
        print(
            f"damaged: {item['sha256']} ({', '.join(item['sop_instance_uids'])}): {item['reason']}"
        )
    print(f"verify: {'clean' if report.verify.get('clean') else report.verify}; report in {path}")
    return 0 if report.clean else 1


async def _trusted_key(args: argparse.Namespace, target):
    """The key manifests must be signed with: --public-key, else this hub's own."""
    from hub.backup.manifest import ManifestError, public_key_from, public_text, signing_key
    from hub.cli import settings_from
    from hub.security.keys import KEY_DIR

    if args.public_key is not None:
        return public_key_from(args.public_key.read_text()), None
    settings = settings_from(args)
    if not (settings.data_dir / KEY_DIR).is_dir():
        raise ManifestError(
            "this hub has no signing key to check the backups with: give --public-key "
            "(the target's signing.pub, from a copy kept apart from it)"
        )
    signer = signing_key(settings.data_dir)
    return public_key_from(public_text(signer)), signer


async def _verify_restored(dest: Path) -> dict:
    from hub.archive import Archive
    from hub.archive.verify import scan
    from hub.config import Settings
    from hub.stores import open_store

    # A restored index is the snapshot: embedded SQLite, whatever the hub was running on.
    settings = dataclasses.replace(Settings.from_env(data_dir=dest), database_url=None)
    archive = await Archive.open(settings, store=open_store(settings))
    try:
        report = await scan(archive, deep=True)
    finally:
        await archive.close()
    return {
        "clean": report.clean,
        "checked": report.checked,
        "missing": report.missing,
        "corrupt": report.corrupt,
        "orphans": report.orphans,
    }
