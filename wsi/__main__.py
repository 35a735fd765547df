"""`python -m wsi convert SLIDE --out DIR`: the converter without the rest of the hub."""

from __future__ import annotations

import argparse
import sys

from wsi.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsi")
    register(parser.add_subparsers(title="commands", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
