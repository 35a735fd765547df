"""DIMSE status datasets (PS3.7 Annex C) with the reason in ErrorComment."""

from __future__ import annotations

from pydicom import Dataset

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
NOT_AUTHORIZED = 0x0124


def status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        # ErrorComment is LO in the command set: 64 ASCII characters, no backslash.
        text = comment.replace("\\", "/").encode("ascii", "replace").decode("ascii")
        ds.ErrorComment = text[:64]
    return ds
