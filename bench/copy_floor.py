"""The least a Python slide converter does: import tifffile, open the slide, copy the bytes of
every tiled page into one file. No DICOM. Time it against `cp`:

    /usr/bin/time -f %e .venv/bin/python bench/copy_floor.py SLIDE OUT
    /usr/bin/time -f %e cp SLIDE OUT
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import tifffile  # noqa: E402

READ = 64 << 20


def copy_tiles(src: str, dst: str) -> None:
    buffer = memoryview(bytearray(READ))
    with tifffile.TiffFile(src) as tif:
        fd_in = os.open(src, os.O_RDONLY)
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for page in tif.pages:
                if not page.is_tiled:
                    continue
                pos = page.dataoffsets[0]
                end = page.dataoffsets[-1] + page.databytecounts[-1]
                while pos < end:
                    n = os.preadv(fd_in, [buffer[: min(READ, end - pos)]], pos)
                    os.write(fd_out, buffer[:n])
                    pos += n
        finally:
            os.close(fd_in)
            os.close(fd_out)


if __name__ == "__main__":
    copy_tiles(sys.argv[1], sys.argv[2])
