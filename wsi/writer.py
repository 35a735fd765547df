"""Stream encapsulated frames into a DICOM Part-10 file with bounded memory.

pydicom writes the header (file meta + every element before Pixel Data; wsi.metadata.header_bytes).
The encapsulated Pixel
Data element itself is written here by hand: pydicom's dcmwrite needs all frames in memory (a
bytes value or a buffer of the whole encapsulated stream), which for a level-0 instance of a large
slide is gigabytes. We write the undefined-length (7FE0,0010) element, a Basic Offset Table item
(or, past 4 GiB, an empty one plus an Extended Offset Table, reserved in the header and filled
in at the end), one item per frame, then the sequence delimiter.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from pathlib import Path

_ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian
_SEQ_DELIM = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_PIXEL_DATA = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"
_EOT_TAG = b"\xe0\x7f\x01\x00OV\x00\x00"
_EOT_LENGTHS_TAG = b"\xe0\x7f\x02\x00OV\x00\x00"
FOUR_GIB = 2**32
# A DS value that cannot occur otherwise; replaced in the header once the frames are written.
RATIO_PLACEHOLDER = "9.8765432109e+99"


class FrameWriter:
    """Write ``frames`` encapsulated frames after ``header`` (Part-10 bytes up to Pixel Data).

    ``large``: the pixel data may pass 4 GiB, so offsets go into an Extended Offset Table
    (the Basic Offset Table, whose offsets are 32-bit, is then left empty as the standard asks).
    Frames go out with one writev() each, straight from the caller's buffers.
    """

    def __init__(self, path: Path, header: bytes, frames: int, large: bool) -> None:
        self.path = path
        self.frames = frames
        self.large = large
        self._offsets = array("Q")
        self._lengths = array("Q")
        self._pos = 0  # bytes of items written after the offset table item
        self._ratio_at = header.find(RATIO_PLACEHOLDER.encode())
        if large:
            self._eot_at = len(header) + len(_EOT_TAG) + 4
            table = struct.pack("<I", 8 * frames) + bytes(8 * frames)
            header += _EOT_TAG + table + _EOT_LENGTHS_TAG + table + _PIXEL_DATA + _ITEM
            header += b"\x00\x00\x00\x00"
        else:
            header += _PIXEL_DATA + _ITEM + struct.pack("<I", 4 * frames)
            self._bot_at = len(header)
            header += bytes(4 * frames)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._end = 0
        self._append([header])

    @property
    def compressed_bytes(self) -> int:
        return sum(self._lengths)

    def _append(self, parts: list) -> None:
        want = sum(len(part) for part in parts)
        done = os.writev(self._fd, parts)
        if done != want:  # short write (rare: signals, full disk): finish it piece by piece
            rest = b"".join(bytes(part) for part in parts)[done:]
            while rest:
                rest = rest[os.write(self._fd, rest) :]
        self._end += want

    def write_batch(self, frames: list[tuple[bytes | memoryview, bytes, int]]) -> None:
        """Append frames given as (data, prefix, skip): each frame is ``prefix`` followed by
        ``data[skip:]`` (so a tile's SOI can be swapped for merged tables without a copy)."""
        parts: list = []
        for data, prefix, skip in frames:
            n = len(prefix) + len(data) - skip
            pad = n & 1  # items have even length; a 0x00 after a JPEG/J2K EOI is allowed
            self._offsets.append(self._pos)
            self._lengths.append(n + pad)
            parts.append(_ITEM + struct.pack("<I", n + pad) + prefix)
            parts.append(memoryview(data)[skip:] if skip else data)
            if pad:
                parts.append(b"\x00")
            self._pos += 8 + n + pad
        if not self.large and self._pos > FOUR_GIB:
            raise OverflowError("pixel data passed 4 GiB without an Extended Offset Table")
        self._append(parts)

    def close(self, ratio: str | None = None) -> None:
        """Fill in the offset tables (and the compression ratio); ``ratio`` is a DS string."""
        try:
            if len(self._offsets) != self.frames:
                raise RuntimeError(
                    f"{self.path.name}: {len(self._offsets)} of {self.frames} frames"
                )
            self._append([_SEQ_DELIM])
            if self.large:
                os.pwrite(self._fd, _little_endian(self._offsets), self._eot_at)
                lengths_at = self._eot_at + 8 * self.frames + len(_EOT_LENGTHS_TAG) + 4
                os.pwrite(self._fd, _little_endian(self._lengths), lengths_at)
            else:
                os.pwrite(self._fd, _little_endian(array("I", self._offsets)), self._bot_at)
            if self._ratio_at >= 0:
                if ratio is None or len(ratio) > len(RATIO_PLACEHOLDER):
                    raise ValueError("compression ratio missing or too long for its placeholder")
                os.pwrite(self._fd, ratio.ljust(len(RATIO_PLACEHOLDER)).encode(), self._ratio_at)
        finally:
            os.close(self._fd)

    def abort(self) -> None:
        os.close(self._fd)


def compression_ratio(raw_bytes: int, compressed: int) -> str:
    """LossyImageCompressionRatio as a DS string."""
    return f"{raw_bytes / max(compressed, 1):.6g}"


def _little_endian(values: array) -> bytes:
    if sys.byteorder == "big":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()
