"""`tessera convert SLIDE`: vendor whole-slide image -> DICOM WSI files, or into the archive.

The conversion and its options are the wsi library's own command (``wsi.cli``); this adds
``--into-archive``. Building the parser imports nothing heavy: the hub builds it for every command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wsi import cli as wsi_cli

INTO_ARCHIVE = (
    "--into-archive",
    {"action": "store_true", "help": "ingest the result into the archive (--data)"},
)


def register(subparsers: Any) -> None:
    wsi_cli.add_parser(subparsers, INTO_ARCHIVE).set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    if args.out is not None:
        return wsi_cli.cmd_convert(args)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tessera-convert-") as tmp:
        paths = wsi_cli.run_conversion(args, Path(tmp) / "out")
        return 1 if paths is None else _ingest(args, paths)


def _ingest(args: argparse.Namespace, paths: list[Path]) -> int:
    import asyncio

    from hub.app import open_archive
    from hub.archive import Source
    from hub.config import Settings

    async def run() -> int:
        archive = await open_archive(Settings.from_env(data_dir=getattr(args, "data", None)))
        failed = 0
        try:
            for path in paths:
                result = await archive.ingest_file(
                    path, source=Source(door="wsi", actor=None), keep_source=False
                )
                print(f"{path.name}: {result.status} {result.sop_instance_uid}")
                if not result.ok:
                    failed += 1
                    print(f"  {result.message}", file=sys.stderr)
        finally:
            await archive.close()
        return 1 if failed else 0

    return asyncio.run(run())
