"""`tessera convert SLIDE`: vendor whole-slide image -> DICOM WSI files, or into the archive.

Imports stay light at module level: the hub's parser imports this module on every command.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from wsi.options import CODECS, JPEG_MODES


def register(subparsers: Any) -> None:
    convert = subparsers.add_parser(
        "convert",
        help="convert a vendor whole-slide image to a DICOM WSI pyramid",
        description="Convert SVS, NDPI, MRXS, Philips TIFF, SCN, BIF, VMS, SVSlide, generic or "
        "OME tiled TIFF into DICOM VL Whole Slide Microscopy instances.",
    )
    convert.add_argument("slide", type=Path, help="the vendor slide file")
    where = convert.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="write the DICOM files into this folder")
    where.add_argument(
        "--into-archive", action="store_true", help="ingest the result into the archive (--data)"
    )
    convert.add_argument("--patient-id", default="")
    convert.add_argument("--patient-name", default="")
    convert.add_argument("--accession", default="")
    convert.add_argument("--study-uid", default=None)
    convert.add_argument("--study-description", default="")
    convert.add_argument("--specimen-id", default=None, help="slide/container identifier")
    convert.add_argument("--codec", choices=CODECS, default="passthrough-or-jpeg")
    convert.add_argument("--jpeg-mode", choices=JPEG_MODES, default="rgb")
    convert.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    convert.add_argument("--tile-size", type=int, default=None)
    convert.add_argument("--workers", type=int, default=None, help="default: CPU count")
    convert.add_argument("--no-label", action="store_true", help="leave the slide label out")
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    convert.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from wsi import ConversionError, ConvertOptions, SlideIds, convert_slide

    try:
        ids = SlideIds(
            patient_id=args.patient_id,
            patient_name=args.patient_name,
            accession=args.accession,
            study_uid=args.study_uid,
            study_description=args.study_description,
            specimen_id=args.specimen_id,
        )
        extra = {"workers": args.workers} if args.workers else {}
        options = ConvertOptions(
            codec=args.codec,
            jpeg_mode=args.jpeg_mode,
            jpeg_quality=args.quality,
            tile_size=args.tile_size,
            include_label=not args.no_label,
            **extra,
        )
        if args.out is not None:
            paths = _convert(convert_slide, args, args.out, ids, options)
            for path in paths:
                print(path)
            return 0
        with tempfile.TemporaryDirectory(prefix="tessera-convert-") as tmp:
            paths = _convert(convert_slide, args, Path(tmp) / "out", ids, options)
            return _ingest(args, paths)
    except ConversionError as exc:
        print(f"convert: {exc}", file=sys.stderr)
        return 1


def _convert(convert_slide, args: argparse.Namespace, out: Path, ids, options) -> list[Path]:
    if args.quiet:
        return convert_slide(args.slide, out, ids, options)
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: the converter forks its workers
    with tqdm(unit="frame", desc=args.slide.name, dynamic_ncols=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return convert_slide(args.slide, out, ids, options, progress)


def _ingest(args: argparse.Namespace, paths: list[Path]) -> int:
    import asyncio

    from hub.archive import Source
    from hub.config import Settings
    from hub.runtime import open_archive

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
