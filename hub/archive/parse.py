"""Parse a received Part-10 file once, at ingest: identity, index attributes, DICOM JSON
metadata and the frame table. Runs in an executor; never on the event loop.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from hub.archive import errors
from hub.archive.dicomjson import dataset_json
from hub.archive.frametable import encapsulated_frames, native_frames
from hub.archive.model import FrameTable
from hub.archive.validate import check_required

BULK_THRESHOLD = 1024
BULK_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
PIXEL_DATA = 0x7FE00010
PART10_MAGIC_OFFSET = 128


@dataclass
class Bulk:
    """A top-level bulk element kept out of the JSON: served by byte range."""

    offset: int
    length: int
    vr: str


@dataclass
class ParsedInstance:
    sop_class_uid: str
    sop_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax: str
    dataset: Dataset  # header only, bulk elements removed
    json: dict[str, Any]  # DICOM JSON with BulkDataURI placeholders (see bulk_uri)
    frames: FrameTable | None
    bulk: dict[str, Bulk] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # stored anyway; see validate.py

    def keyword(self, name: str, default: Any = "") -> Any:
        value = self.dataset.get(name, default)
        return default if value is None else value


def bulk_uri(tag_hex: str) -> str:
    """Relative URI of a top-level bulk element; the DICOMweb door prefixes the instance URL."""
    return f"bulkdata/{tag_hex}"


def parse_part10(source: Path | BinaryIO) -> ParsedInstance:
    """Parse a file, or a seekable binary reader of its bytes (a spool's ``reader()``)."""
    if isinstance(source, Path | str):
        with open(source, "rb") as f:
            return _parse(f)
    return _parse(source)


def _parse(f: BinaryIO) -> ParsedInstance:
    _check_magic(f)
    try:
        ds = read_partial(f, stop_when=_at_pixel_data, defer_size=BULK_THRESHOLD)
    except (InvalidDicomError, EOFError, ValueError, struct.error, KeyError, TypeError) as exc:
        raise errors.IngestError(
            errors.CANNOT_UNDERSTAND, f"Not a readable DICOM Part-10 file: {exc}"
        ) from exc
    ts = _transfer_syntax(ds)
    if ts == DeflatedExplicitVRLittleEndian:
        return _parse_deflated(f)
    pixel_at = f.tell()
    file_size = f.seek(0, 2)
    f.seek(pixel_at)
    ident = _identity(ds, ts)
    bulk = _take_bulk(ds, ts)
    _check_within(bulk, file_size)
    frames = None
    if _has_pixel_data(f, pixel_at):
        frames, pixel_bulk = _pixel_frames(f, pixel_at, ds, ts, file_size)
        bulk["7FE00010"] = pixel_bulk
    warnings = check_required(ds, frames is not None or any(t.startswith("7FE0") for t in bulk))
    # Built while the file is open: deferred values are read from it.
    data = _to_json(ds, bulk, warnings)
    return ParsedInstance(
        *ident, dataset=ds, json=data, frames=frames, bulk=bulk, warnings=warnings
    )


def _check_magic(f: BinaryIO) -> None:
    head = f.read(PART10_MAGIC_OFFSET + 4)
    if len(head) < PART10_MAGIC_OFFSET + 4 or head[PART10_MAGIC_OFFSET:] != b"DICM":
        raise errors.IngestError(
            errors.CANNOT_UNDERSTAND, "Not a DICOM Part-10 file: no 'DICM' after the preamble"
        )
    f.seek(0)


def _at_pixel_data(tag: int, _vr: str | None, _length: int) -> bool:
    return tag == PIXEL_DATA


def _transfer_syntax(ds: Dataset) -> UID:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not ts:
        raise errors.IngestError(
            errors.CANNOT_UNDERSTAND, "File meta information lacks TransferSyntaxUID (0002,0010)"
        )
    uid = UID(str(ts))
    if not uid.is_transfer_syntax:
        raise errors.IngestError(
            errors.TRANSFER_SYNTAX_NOT_SUPPORTED, f"Unknown transfer syntax {uid}"
        )
    return uid


def _identity(ds: Dataset, ts: UID) -> tuple[str, str, str, str, str]:
    values = []
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        try:
            value = str(ds.get(keyword) or "").strip()
        except Exception as exc:  # a malformed value in a required attribute
            raise errors.IngestError(errors.CANNOT_UNDERSTAND, f"{keyword}: {exc}") from exc
        if not value:
            raise errors.IngestError(errors.CANNOT_UNDERSTAND, f"Missing {keyword}")
        if not pydicom.uid.UID(value).is_valid:
            raise errors.IngestError(errors.CANNOT_UNDERSTAND, f"Invalid {keyword}: {value!r}")
        values.append(value)
    return (*values, str(ts))  # type: ignore[return-value]


def _take_bulk(ds: Dataset, ts: UID) -> dict[str, Bulk]:
    """Remove large binary top-level elements from the header dataset and note their ranges."""
    bulk: dict[str, Bulk] = {}
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        vr = raw.VR or _dictionary_vr(tag)
        length = getattr(raw, "length", 0) or 0
        if vr in BULK_VRS and length > BULK_THRESHOLD and length != 0xFFFFFFFF:
            value_tell = getattr(raw, "value_tell", None)
            if value_tell is None:
                continue
            bulk[f"{int(tag):08X}"] = Bulk(value_tell, length, vr)
            del ds[tag]
    return bulk


def _check_within(bulk: dict[str, Bulk], file_size: int) -> None:
    for tag_hex, item in bulk.items():
        if item.offset + item.length > file_size:
            raise errors.IngestError(
                errors.CANNOT_UNDERSTAND,
                f"The file is truncated: element ({tag_hex[:4]},{tag_hex[4:]}) runs past its end",
            )


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _has_pixel_data(f: BinaryIO, at: int) -> bool:
    f.seek(at)
    return len(f.read(8)) == 8


def _pixel_frames(
    f: BinaryIO, at: int, ds: Dataset, ts: UID, file_size: int
) -> tuple[FrameTable | None, Bulk]:
    f.seek(at)
    header = f.read(12)
    little = ts.is_little_endian
    # Some writers use implicit VR despite an explicit transfer syntax; trust the bytes.
    implicit = not (header[4:6].isalpha() and header[4:6].isupper())
    end = "<" if little else ">"
    if implicit:
        (length,) = struct.unpack(end + "I", header[4:8])
        value_at, vr = at + 8, "OW"
    else:
        vr = header[4:6].decode("ascii", "replace")
        (length,) = struct.unpack(end + "I", header[8:12])
        value_at = at + 12
    number_of_frames = _int(ds.get("NumberOfFrames"), 1) or 1
    if length == 0xFFFFFFFF:
        extended = _extended_offsets(ds)
        table = encapsulated_frames(f, value_at, number_of_frames, extended, file_size)
        return table, Bulk(value_at, file_size - value_at, vr)
    if value_at + length > file_size:
        raise errors.IngestError(
            errors.CANNOT_UNDERSTAND,
            f"Pixel Data is truncated: {length} bytes declared, {file_size - value_at} present",
        )
    table = native_frames(ds, value_at, length, number_of_frames) if little else None
    return table, Bulk(value_at, length, vr)


def _extended_offsets(ds: Dataset) -> tuple[list[int], list[int]] | None:
    if "ExtendedOffsetTable" not in ds:
        return None
    offsets = ds.ExtendedOffsetTable
    lengths = ds.get("ExtendedOffsetTableLengths")
    if not offsets or not lengths:
        return None
    count = len(offsets) // 8
    return (
        list(struct.unpack(f"<{count}Q", offsets)),
        list(struct.unpack(f"<{count}Q", lengths)),
    )


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _to_json(ds: Dataset, bulk: dict[str, Bulk], warnings: list[str]) -> dict[str, Any]:
    """The DICOM JSON; a number that is not one is left out of it, with a warning."""
    invalid: list[str] = []
    try:
        data = dataset_json(ds, invalid)
    except Exception as exc:
        raise errors.IngestError(
            errors.CANNOT_UNDERSTAND, f"Cannot encode the data set as DICOM JSON: {exc}"
        ) from exc
    for tag_hex, item in bulk.items():
        data[tag_hex] = {"vr": item.vr if item.vr in BULK_VRS else "OB"}
        data[tag_hex]["BulkDataURI"] = bulk_uri(tag_hex)
    warnings.extend(f"{value}: left out of the metadata" for value in invalid)
    return dict(sorted(data.items()))


def _parse_deflated(f: BinaryIO) -> ParsedInstance:
    """Deflated files cannot be served by byte range: keep all values, compute no frame table."""
    try:
        f.seek(0)
        ds = pydicom.dcmread(f)
    except Exception as exc:
        raise errors.IngestError(
            errors.CANNOT_UNDERSTAND, f"Unreadable deflated file: {exc}"
        ) from exc
    ident = _identity(ds, DeflatedExplicitVRLittleEndian)
    bulk: dict[str, Bulk] = {}
    if "PixelData" in ds:
        del ds.PixelData
        bulk["7FE00010"] = Bulk(-1, -1, "OB")  # offset -1: served by decoding the file
    warnings = check_required(ds, bool(bulk))
    data = _to_json(ds, bulk, warnings)
    return ParsedInstance(*ident, dataset=ds, json=data, frames=None, bulk=bulk, warnings=warnings)


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
