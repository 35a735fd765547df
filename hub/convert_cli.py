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
        return _convert_into_archive(args, Path(tmp) / "out")


def _convert_into_archive(args: argparse.Namespace, out: Path) -> int:
    """Convert in a helper thread and ingest each instance as soon as the conversion hands it
    over, smallest first: the study can be opened before level 0 is in. A conversion failing
    part-way leaves what was stored, and says the study is incomplete."""
    import asyncio

    from hub.app import open_archive
    from hub.archive import Source
    from hub.config import Settings

    async def run() -> int:
        archive = await open_archive(Settings.from_env(data_dir=getattr(args, "data", None)))
        loop = asyncio.get_running_loop()
        arrivals: asyncio.Queue[Path | None] = asyncio.Queue()

        def handed_over(instance: Any) -> None:  # on the conversion's threads
            loop.call_soon_threadsafe(arrivals.put_nowait, instance.path)

        stored = refused = 0
        try:
            conversion = asyncio.ensure_future(
                asyncio.to_thread(wsi_cli.run_conversion, args, out, handed_over, True)
            )
            # Queued behind every instance the conversion announced (callbacks keep their order).
            conversion.add_done_callback(lambda _: arrivals.put_nowait(None))
            while (path := await arrivals.get()) is not None:
                result = await archive.ingest_file(
                    path, source=Source(door="wsi", actor=None), keep_source=False
                )
                print(f"{path.name}: {result.status} {result.sop_instance_uid}")
                if result.ok:
                    stored += 1
                else:
                    refused += 1
                    print(f"  {result.message}", file=sys.stderr)
            converted = await conversion
        finally:
            await archive.close()
        if converted is None and stored:
            print(
                f"convert: the study is incomplete: {stored} instances were stored", file=sys.stderr
            )
        return 1 if converted is None or refused else 0

    return asyncio.run(run())
