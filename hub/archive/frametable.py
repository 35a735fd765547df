"""Frame tables: where each frame's bytes sit in a stored Part-10 file.

Computed once at ingest so that serving a frame is one pread. The item walk below is
hand-written because pydicom's encapsulation helpers return fragment bytes, not their file
offsets, and we must not hold a multi-GB Pixel Data value in memory.
"""

from __future__ import annotations

import struct
from array import array
from typing import BinaryIO

from pydicom.dataset import Dataset

from hub.archive import errors
from hub.archive.model import FrameTable

ITEM = 0xE000FFFE
SEQUENCE_DELIMITER = 0xE0DDFFFE
JPEG_SOI = b"\xff\xd8"
J2K_SOC = b"\xff\x4f\xff\x51"


def native_frames(ds: Dataset, value_at: int, length: int, count: int) -> FrameTable | None:
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    samples = int(ds.get("SamplesPerPixel") or 1)
    bits = int(ds.get("BitsAllocated") or 0)
    if not rows or not columns or not bits:
        return None
    pixels = rows * columns * samples
    if str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
        pixels = rows * columns * 2  # chroma subsampled horizontally: two samples per pixel
    if bits == 1 and count > 1 and pixels % 8:
        return None  # frames are not byte-aligned; served by decoding the file
    frame_bytes = (pixels + 7) // 8 if bits == 1 else pixels * bits // 8
    if frame_bytes * count > length:
        raise errors.IngestError(
            errors.CANNOT_UNDERSTAND,
            f"Pixel Data holds {length} bytes, {count} frames need {frame_bytes * count}",
        )
    ranges = tuple(((value_at + i * frame_bytes, frame_bytes),) for i in range(count))
    return FrameTable(ranges=ranges, encapsulated=False)


def encapsulated_frames(
    f: BinaryIO,
    value_at: int,
    count: int,
    extended: tuple[list[int], list[int]] | None,
    file_size: int,
) -> FrameTable:
    basic, fragments = _walk_items(f, value_at, file_size)
    first_item_at = fragments[0][0] - 8 if fragments else value_at
    if extended is not None:
        starts = extended[0]
    elif basic:
        starts = basic
    else:
        starts = None
    if starts is not None:
        frames = _group_by_offsets(fragments, [first_item_at + s for s in starts])
    elif count == 1:
        frames = [fragments]
    elif len(fragments) == count:
        frames = [[frag] for frag in fragments]
    else:
        frames = _group_by_markers(f, fragments)
    if len(frames) != count:
        raise errors.IngestError(
            errors.CANNOT_UNDERSTAND,
            f"Encapsulated Pixel Data holds {len(frames)} frames, NumberOfFrames says {count}",
        )
    return FrameTable(ranges=tuple(tuple(fr) for fr in frames), encapsulated=True)


def _walk_items(
    f: BinaryIO, value_at: int, file_size: int
) -> tuple[list[int], list[tuple[int, int]]]:
    """Return the Basic Offset Table entries and (offset, length) of every fragment."""
    pos = value_at
    fragments: list[tuple[int, int]] = []
    basic: list[int] = []
    first = True
    while True:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            raise errors.IngestError(
                errors.CANNOT_UNDERSTAND, "Encapsulated Pixel Data is truncated"
            )
        tag, length = struct.unpack("<II", header)
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM or length == 0xFFFFFFFF or pos + 8 + length > file_size:
            raise errors.IngestError(
                errors.CANNOT_UNDERSTAND, f"Malformed Pixel Data item at byte {pos}"
            )
        if first:
            basic = list(array("I", f.read(length))) if length else []
            first = False
        else:
            fragments.append((pos + 8, length))
        pos += 8 + length
    if first:
        raise errors.IngestError(errors.CANNOT_UNDERSTAND, "Pixel Data lacks a Basic Offset Table")
    return basic, fragments


def _group_by_offsets(
    fragments: list[tuple[int, int]], starts: list[int]
) -> list[list[tuple[int, int]]]:
    frames: list[list[tuple[int, int]]] = [[] for _ in starts]
    index = -1
    for offset, length in fragments:
        item_at = offset - 8
        while index + 1 < len(starts) and item_at >= starts[index + 1]:
            index += 1
        if index < 0:
            raise errors.IngestError(errors.CANNOT_UNDERSTAND, "Offset table does not match items")
        frames[index].append((offset, length))
    if any(not frame for frame in frames):
        raise errors.IngestError(errors.CANNOT_UNDERSTAND, "Offset table points past the items")
    return frames


def _group_by_markers(f: BinaryIO, fragments: list[tuple[int, int]]) -> list[list]:
    """Without an offset table, a fragment that opens a JPEG or JPEG 2000 stream starts a frame."""
    frames: list[list[tuple[int, int]]] = []
    for offset, length in fragments:
        f.seek(offset)
        head = f.read(4)
        if not frames or head.startswith(JPEG_SOI) or head == J2K_SOC:
            frames.append([])
        frames[-1].append((offset, length))
    return frames


def pack(table: FrameTable) -> bytes:
    """Serialise as uint64 words: flag, frame count, then per frame a range count and ranges."""
    words = array("Q", [1 if table.encapsulated else 0, len(table.ranges)])
    for ranges in table.ranges:
        words.append(len(ranges))
        for offset, length in ranges:
            words.extend((offset, length))
    return words.tobytes()


def unpack(blob: bytes) -> FrameTable:
    words = array("Q")
    words.frombytes(blob)
    encapsulated, count = bool(words[0]), words[1]
    pos = 2
    frames = []
    for _ in range(count):
        n = words[pos]
        pos += 1
        frames.append(tuple((words[pos + 2 * i], words[pos + 2 * i + 1]) for i in range(n)))
        pos += 2 * n
    return FrameTable(ranges=tuple(frames), encapsulated=encapsulated)
