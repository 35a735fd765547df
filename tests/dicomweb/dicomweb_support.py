"""Helpers shared by the DICOMweb tests: the real files they send, grouped for sending."""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_files


def readable_files(corpus: Path) -> list[Path]:
    """pydicom-data files that pydicom reads as Part-10, plus the corpus DICOM folders."""
    found = []
    candidates = [Path(f) for f in get_testdata_files()]
    candidates += sorted((corpus / "dicom-wsi").glob("*.dcm")) + sorted(
        (corpus / "us").glob("*.dcm")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in candidates:
            try:
                pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:
                continue
            found.append(path)
    return found


def sop_uid(path: Path) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    value = ds.get("SOPInstanceUID")
    return str(value) if value else None


def rounds(paths: list[Path]) -> list[list[Path]]:
    """Split files so that no round holds two files with the same SOP Instance UID.

    pydicom-data keeps one image in many encodings under one UID; an archive stores one
    object per UID, so each encoding is sent to a fresh archive.
    """
    by_uid: dict[str | None, list[Path]] = defaultdict(list)
    for path in paths:
        by_uid[sop_uid(path)].append(path)
    out: list[list[Path]] = []
    for uid, group in by_uid.items():
        for i, path in enumerate(group):
            if uid is None:
                i = 0
            while len(out) <= i:
                out.append([])
            out[i].append(path)
    return out


BOUNDARY = "tessera-test-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def multipart_body(parts: list[tuple[str, bytes]], boundary: str = BOUNDARY) -> bytes:
    out = b""
    for ctype, data in parts:
        out += f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
