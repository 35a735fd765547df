"""`python -m wsi convert SLIDE --out DIR`: the converter without the rest of the hub."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Before numpy loads: the converter does no linear algebra, and OpenBLAS's start-up threads would
# spin on the cores the conversion needs.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from wsi.cli import register  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsi")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, default=None, help="archive data folder")
    commands = parser.add_subparsers(title="commands", required=True)

    class _WithCommon:
        def add_parser(self, name: str, **kwargs):
            kwargs.setdefault("parents", [common])
            return commands.add_parser(name, **kwargs)

    register(_WithCommon())
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
