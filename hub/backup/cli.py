"""`tessera backup TARGET`, `tessera backup verify TARGET`, `tessera backup init TARGET`,
`tessera restore TARGET --to DIR` and `tessera backup-receiver`.

TARGET is a folder or the http(s):// URL of a `tessera backup-receiver` (its token file in
TESSERA_BACKUP_TOKEN_FILE). Exit status: 0 when everything is whole; 1 when something is
damaged or missing (named in the output); 2 for a command that cannot start (a target of
another hub, a non-empty destination, a manifest that does not verify, a wrong passphrase).
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime
from pathlib import Path

VERIFY, INIT = "verify", "init"


def register(subparsers) -> None:
    backup = subparsers.add_parser(
        "backup",
        help="back up the index and the stored objects to a folder or a receiver "
        "(hot, incremental, signed)",
        description="`tessera backup TARGET` takes a backup; "
        "`tessera backup verify TARGET` checks the target's backups; "
        "`tessera backup init TARGET` writes a recovery kit of the keys into the target.",
    )
    backup.add_argument("words", nargs="+", metavar="[verify|init] TARGET")
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
    backup.add_argument(
        "--passphrase-env",
        metavar="NAME",
        help="init: the environment variable holding the kit's passphrase (default: a prompt)",
    )
    backup.set_defaults(func=cmd_backup)

    restore = subparsers.add_parser(
        "restore", help="restore a backup into a new, empty data folder, then verify it"
    )
    restore.add_argument("target")
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
    restore.add_argument(
        "--recovery-kit-passphrase-env",
        metavar="NAME",
        help="open the target's recovery kit with the passphrase in this environment variable, "
        "and put its keys into the new data folder",
    )
    restore.set_defaults(func=cmd_restore)

    receiver = subparsers.add_parser(
        "backup-receiver",
        help="serve a folder as an append-only backup target over HTTP (no overwrite, no delete)",
    )
    receiver.add_argument(
        "--append-only", action="store_true", required=True, help="the only mode there is"
    )
    receiver.add_argument("--dir", type=Path, required=True, help="where the backups are kept")
    receiver.add_argument("--port", type=int, required=True)
    receiver.add_argument("--host", default="127.0.0.1")
    receiver.add_argument(
        "--token-file", type=Path, help="the hub's bearer token (default: DIR/receiver.token, "
        "made on first start)",
    )  # fmt: skip
    receiver.add_argument(
        "--max-object-bytes", type=int, default=64 << 30, help="the largest object taken"
    )
    receiver.set_defaults(func=cmd_receiver)


def _percent(text: str) -> float:
    value = float(text.rstrip("%"))
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError("a percentage between 0 and 100")
    return value / 100


def cmd_backup(args: argparse.Namespace) -> int:
    if args.words[0] == VERIFY and len(args.words) == 2:
        return _run(_verify(args, args.words[1]))
    if args.words[0] == INIT and len(args.words) == 2:
        return _run(_init(args, args.words[1]))
    if len(args.words) != 1:
        print("usage: tessera backup TARGET | tessera backup verify|init TARGET")
        return 2
    return _run(_backup(args, args.words[0]))


def cmd_receiver(args: argparse.Namespace) -> int:
    from hub.backup.receiver import serve

    args.dir.mkdir(parents=True, exist_ok=True)
    serve(
        args.dir, args.host, args.port, args.token_file or args.dir / "receiver.token",
        args.max_object_bytes,
    )  # fmt: skip
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    return _run(_restore(args))


def _run(work) -> int:
    import asyncio

    from hub.backup.kit import KitError
    from hub.backup.manifest import ManifestError
    from hub.backup.restore import RestoreError
    from hub.backup.target import TargetError

    try:
        return asyncio.run(work)
    except (ManifestError, RestoreError, TargetError, KitError) as exc:
        print(f"error: {exc}")
        return 2


async def _backup(args: argparse.Namespace, where: str) -> int:
    from hub.archive import Archive
    from hub.backup.engine import run_backup
    from hub.backup.target import open_target
    from hub.cli import settings_from
    from hub.stores import open_store

    settings = settings_from(args)
    target = open_target(where, settings.backup, settings.tmp_dir / "backup")
    archive = await Archive.open(settings, store=open_store(settings))
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


async def _verify(args: argparse.Namespace, where: str) -> int:
    from hub.backup.check import check_target
    from hub.backup.target import open_target
    from hub.cli import settings_from

    fraction = 1.0 if args.read_data else (args.read_data_subset or 0.0)
    target = open_target(where, settings_from(args).backup)
    try:
        key, signer = await _trusted_key(args)
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
    from hub.backup.kit import install
    from hub.backup.restore import restore, write_report
    from hub.backup.target import open_target
    from hub.cli import settings_from

    target = open_target(args.target, settings_from(args).backup)
    try:
        keys = await _open_kit(args, target)
        key, _ = await _trusted_key(args, keys)
        report = await restore(
            target, args.dest, key, name=args.manifest, at=args.at, parallel=args.parallel,
            keys=keys,
        )  # fmt: skip
    finally:
        await target.close()
    store_key = install(keys, args.dest) if keys else None
    report.verify = await _verify_restored(args.dest, store_key)
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
    if store_key is not None:
        print(f"start the restored hub with TESSERA_STORE_KEY_FILE={store_key}")
    return 0 if report.clean else 1


async def _init(args: argparse.Namespace, where: str) -> int:
    import asyncio

    from hub.backup.engine import pin_public_key
    from hub.backup.kit import Keys, KitError, seal
    from hub.backup.manifest import public_text, signing_key
    from hub.backup.target import open_target
    from hub.cli import settings_from
    from hub.security.keys import audit_key

    settings = settings_from(args)
    target = open_target(where, settings.backup)
    try:
        if await target.read_recovery_kit() is not None:
            raise KitError(f"{where} holds a recovery kit already (a target keeps its first)")
        passphrase = _passphrase(args, args.passphrase_env, confirm=True)
        public = public_text(signing_key(settings.data_dir))
        audit = audit_key(settings.data_dir, settings.security.audit_key)
        keys = Keys(audit, _store_key(settings), public)
        kit = await asyncio.to_thread(seal, keys, passphrase)
        await pin_public_key(target, public)
        await target.write_recovery_kit(kit)
    finally:
        await target.close()
    ids = ", ".join(f"{what} {value}" for what, value in keys.ids.items())
    print(f"recovery kit written to {where} ({ids}); keep the passphrase apart from it")
    return 0


def _store_key(settings) -> bytes | None:
    storage = settings.storage
    if not (storage.encryption_key_file or storage.encryption_key):
        return None
    from hub.security.at_rest import load_store_key

    return load_store_key(storage.encryption_key_file, storage.encryption_key)


def _passphrase(args: argparse.Namespace, env_name: str | None, *, confirm: bool) -> str:
    """From the environment variable named (never a flag's value: it would show in ps), else
    a prompt."""
    import getpass

    from hub.backup.kit import KitError
    from hub.cli import settings_from

    if env_name:
        if not (value := settings_from(args).environ.get(env_name)):
            raise KitError(f"the environment variable {env_name} holds no passphrase")
        return value
    first = getpass.getpass("recovery kit passphrase: ")
    if confirm and getpass.getpass("the passphrase again: ") != first:
        raise KitError("the two passphrases differ")
    return first


async def _open_kit(args: argparse.Namespace, target):
    """The keys of the target's recovery kit, when asked for; before anything is written."""
    import asyncio

    from hub.backup.kit import KitError, open_kit

    env_name = args.recovery_kit_passphrase_env
    if env_name is None:
        return None
    data = await target.read_recovery_kit()
    if data is None:
        raise KitError("the target holds no recovery kit (made with `tessera backup init`)")
    passphrase = _passphrase(args, env_name, confirm=False)
    return await asyncio.to_thread(open_kit, data, passphrase)


async def _trusted_key(args: argparse.Namespace, keys=None):
    """The key manifests must be signed with: --public-key, else the one in the recovery kit
    (its passphrase authenticates it), else this hub's own."""
    from hub.backup.manifest import ManifestError, public_key_from, public_text, signing_key
    from hub.cli import settings_from
    from hub.security.keys import KEY_DIR

    if args.public_key is not None:
        return public_key_from(args.public_key.read_text()), None
    if keys is not None:
        return public_key_from(keys.signing_public), None
    settings = settings_from(args)
    if not (settings.data_dir / KEY_DIR).is_dir():
        raise ManifestError(
            "this hub has no signing key to check the backups with: give --public-key "
            "(the target's signing.pub, from a copy kept apart from it), or open the "
            "recovery kit with --recovery-kit-passphrase-env"
        )
    signer = signing_key(settings.data_dir)
    return public_key_from(public_text(signer)), signer


async def _verify_restored(dest: Path, store_key: Path | None) -> dict:
    from hub.archive import Archive
    from hub.archive.verify import scan
    from hub.config import Settings
    from hub.stores import open_store

    # A restored index is the snapshot: embedded SQLite, whatever the hub was running on.
    settings = dataclasses.replace(Settings.from_env(data_dir=dest), database_url=None)
    if store_key is not None:  # the recovery kit's, not one this machine may be configured with
        storage = dataclasses.replace(
            settings.storage, encryption_key_file=store_key, encryption_key=None
        )
        settings = dataclasses.replace(settings, storage=storage)
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
