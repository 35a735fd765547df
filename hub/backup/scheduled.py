"""One scheduled run, in a process of its own: ``python -m hub.backup.scheduled``.

The server (``hub.backup.duty``) writes its settings to our standard input as one JSON line
(not in the environment: they hold secrets), and reads back one JSON line: the run's outcome.
A backup of ``backup.target`` as ``tessera backup`` takes it, then the next turn of the rolling
verify (``backup.verify_read_percent`` of the objects read back). Running apart, a backup
holds neither the server's event loop nor its memory, and the server can end it at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from hub.config import Settings


async def run_once(settings: Settings) -> dict[str, Any]:
    """What happened, in the shape ``hub.backup.status`` reports: ``error`` names what stopped
    the run; without one, ``outcome`` is still "failure" when damage was found."""
    outcome: dict[str, Any] = {"started": _now()}
    try:
        outcome |= await _backup(settings)
        outcome["verify"] = await _verify(settings)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, the server retries
        outcome["error"] = f"{type(exc).__name__}: {exc}"
    outcome["ended"] = _now()
    whole = not outcome.get("unreadable") and outcome.get("verify", {}).get("clean")
    outcome["outcome"] = "success" if whole and "error" not in outcome else "failure"
    return outcome


async def _backup(settings: Settings) -> dict[str, Any]:
    from hub.archive import Archive
    from hub.backup.engine import run_backup
    from hub.backup.target import open_target
    from hub.stores import open_store

    archive = await Archive.open(settings, store=open_store(settings), schema="require")
    try:
        target = open_target(settings.backup.target, settings.backup, settings.tmp_dir / "backup")
        try:
            report = await run_backup(archive, target)
        finally:
            await target.close()
    finally:
        await archive.close()
    return {
        "manifest": report.manifest,
        "objects": report.blobs,
        "copied": report.copied,
        "copied_bytes": report.copied_bytes,
        "unreadable": report.unreadable,
    }


async def _verify(settings: Settings) -> dict[str, Any]:
    from hub.backup.check import check_target
    from hub.backup.manifest import signing_key
    from hub.backup.status import VERIFY
    from hub.backup.target import open_target

    signer = signing_key(settings.data_dir)
    target = open_target(settings.backup.target, settings.backup)
    try:
        turn = len(await target.record_names(VERIFY))
        report = await check_target(
            target,
            signer.public_key(),
            read_fraction=settings.backup.verify_read_percent / 100,
            turn=turn,
            record_with=signer,
        )
    finally:
        await target.close()
    return {
        "clean": report.clean,
        "objects": report.objects,
        "read": report.read,
        "problems": report.problems,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat()


def main() -> int:
    settings = Settings.from_json(sys.stdin.readline())
    print(json.dumps(asyncio.run(run_once(settings))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
