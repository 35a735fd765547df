"""`python -m wsi convert SLIDE --out DIR`: vendor whole-slide image -> DICOM WSI files.

The hub's `tessera convert` is this command with one more destination (the archive); both build
on the parser and the conversion here. Imports stay light at module level: parsing and `--help`
load no codec, image or DICOM library.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsi.options import CODECS, JPEG_MODES


def register(subparsers: Any) -> None:
    add_parser(subparsers).set_defaults(func=cmd_convert)


def add_parser(
    subparsers: Any, *destinations: tuple[str, dict[str, Any]]
) -> argparse.ArgumentParser:
    """The `convert` parser. Each of ``destinations`` (a flag and its add_argument keywords) is
    one more alternative to ``--out``."""
    convert = subparsers.add_parser(
        "convert",
        help="convert a vendor whole-slide image to a DICOM WSI pyramid",
        description="Convert SVS, NDPI, MRXS, Philips TIFF, SCN, BIF, VMS, SVSlide, generic or "
        "OME tiled TIFF into DICOM VL Whole Slide Microscopy instances.",
    )
    convert.add_argument("slide", type=Path, help="the vendor slide file")
    where = convert.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="write the DICOM files into this folder")
    for flag, keywords in destinations:
        where.add_argument(flag, **keywords)
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
    convert.add_argument(
        "--z", type=int, default=0, help="Z plane of a multi-plane source (from 0; default 0)"
    )
    convert.add_argument(
        "--t", type=int, default=0, help="time point of a time series (from 0; default 0)"
    )
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    return convert


def cmd_convert(args: argparse.Namespace) -> int:
    paths = run_conversion(args, args.out)
    if paths is None:
        return 1
    for path in paths:
        print(path)
    return 0


def run_conversion(
    args: argparse.Namespace,
    out: Path,
    on_instance: Callable[[Any], None] | None = None,
    progressive: bool = False,
) -> list[Path] | None:
    """Convert ``args.slide`` into ``out`` as the options say; None (the reason printed) if the
    slide cannot be converted. ``on_instance`` and ``progressive``: as for convert_slide."""
    # Before numpy loads: the converter does no linear algebra, and OpenBLAS's start-up threads
    # would spin on the cores the conversion needs.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
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
            z=args.z,
            t=args.t,
            progressive=progressive,
            **extra,
        )
        made: list = []

        def record(instance: Any) -> None:
            made.append(instance)
            if on_instance is not None:
                on_instance(instance)

        if args.quiet:
            return convert_slide(args.slide, out, ids, options, warn=_warn, on_instance=record)
        with _ProgressBar(args.slide.name) as progress:
            paths = convert_slide(args.slide, out, ids, options, progress, _warn, record)
    except ConversionError as exc:
        print(f"convert: {exc}", file=sys.stderr)
        return None
    # The conversion report: how each instance's frames were made (copied, re-tiled, encoded).
    for instance in made:
        print(instance.describe(), file=sys.stderr)
    return paths


def _warn(message: str) -> None:
    print(f"convert: warning: {message}", file=sys.stderr)


class _ProgressBar:
    """A tqdm bar fed by the converter's ``progress(done, total)`` calls."""

    def __init__(self, name: str) -> None:
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: the converter forks its workers
        self._bar = tqdm(unit="frame", desc=name, dynamic_ncols=True)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()

    def __call__(self, done: int, total: int) -> None:
        self._bar.total = total
        self._bar.update(done - self._bar.n)
