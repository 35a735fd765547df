"""DICOM JSON (PS3.18 Annex F) of a parsed header, computed straight from the raw elements.

pydicom's ``Dataset.to_json_dict`` first turns every raw element into a ``DataElement``; for
a CT header of ~250 elements that takes ~5 ms, the largest single cost of ingesting a small
object. Written here by hand: the elements with plain VRs (strings, text in the default
character set, Latin-1 or UTF-8, numbers), encoded from their bytes with the rules of
pydicom's converters, so the result is the same (``tests/archive/test_dicomjson.py``
compares both on every file of pydicom's test data). Everything else goes through pydicom,
element by element: sequences, binary and AT values, deferred (long) values, private tags
and ambiguous VRs of implicit VR files, other character sets and values pydicom would
warn about or refuse.

An IS or DS value that is not a number, which pydicom refuses to encode, is left out (the
element is kept, with its VR and no Value) and reported to the caller. A JSON String would be
allowed (PS3.18 F.2.3), but clients that read IS and DS as numbers (pydicom, and through it
dicomweb-client) then refuse the whole instance; the stored object keeps the bytes sent.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from pydicom import config, hooks
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

NO_BULK = 1 << 30  # bulk elements are taken out of the header before it gets here

STRINGS = frozenset({"AS", "CS", "DA", "DT", "TM", "UI"})  # default repertoire, multi-valued
TEXTS = frozenset({"SH", "LO", "UC"})  # character set, multi-valued
SINGLE_TEXTS = frozenset({"ST", "LT", "UT"})  # character set, one value
NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
CHARACTER_SETS = {
    "": default_encoding,
    "ISO_IR 6": default_encoding,
    "ISO_IR 100": "latin_1",
    "ISO_IR 192": "utf-8",
}
ESC = b"\x1b"
LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})  # pydicom adjusts
INTEGER = re.compile(r"\s*[+-]?\d+\s*")
DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


class _Fallback(Exception):
    """This element is left to pydicom."""


def dataset_json(ds: Dataset, invalid: list[str] | None = None) -> dict[str, Any]:
    """``ds.to_json_dict(bulk_data_threshold=NO_BULK)``, the same result, faster. Each IS or
    DS element kept as strings (its values are not numbers) is named in ``invalid``."""
    invalid = [] if invalid is None else invalid
    if not _plain_config():
        return _pydicom_dataset(ds, invalid)
    encoding = _text_encoding(ds)
    out: dict[str, Any] = {}
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts its elements)
        raw = ds.get_item(tag, keep_deferred=True)
        try:
            out[f"{tag:08X}"] = _element(raw, encoding)
        except (_Fallback, UnicodeDecodeError, struct.error):
            out[f"{tag:08X}"] = _pydicom_element(ds[tag], invalid)
    return out


def _pydicom_dataset(ds: Dataset, invalid: list[str]) -> dict[str, Any]:
    return {f"{tag:08X}": _pydicom_element(ds[tag], invalid) for tag in ds.keys()}  # noqa: SIM118


def _pydicom_element(elem: DataElement, invalid: list[str]) -> dict[str, Any]:
    """pydicom's JSON of the element (of a sequence: of each item's elements); an IS or DS
    value it refuses, not being a number, without its value."""
    if elem.VR == "SQ":
        return {"vr": "SQ", "Value": [_pydicom_dataset(item, invalid) for item in elem.value]}
    try:
        return elem.to_json_dict(None, NO_BULK)
    except ValueError:
        if elem.VR not in ("IS", "DS"):
            raise
    values = elem.value if elem.VM > 1 else [elem.value]
    sent = "\\".join(str(v) for v in values)
    invalid.append(f"{elem.name} {elem.tag} {sent!r} is not a valid {elem.VR}")
    return {"vr": elem.VR}


def _plain_config() -> bool:
    """pydicom's converters are configured as by default (which the rules here follow)."""
    return (
        hooks.hooks.raw_element_value is hooks.raw_element_value
        and hooks.hooks.raw_element_vr is hooks.raw_element_vr
    ) and not (
        config.datetime_conversion
        or config.use_DS_decimal
        or config.use_DS_numpy
        or config.use_IS_numpy
        or config.settings.reading_validation_mode == config.RAISE
    )


def _text_encoding(ds: Dataset) -> str | None:
    """Python codec of the data set's text, None when left to pydicom."""
    try:
        value = ds.get("SpecificCharacterSet") or ""
    except Exception:
        return None
    return CHARACTER_SETS.get(value.strip()) if isinstance(value, str) else None


def _element(raw: Any, encoding: str | None) -> dict[str, Any]:
    if not isinstance(raw, RawDataElement) or raw.value is None or raw.tag in LUT_DESCRIPTORS:
        raise _Fallback
    vr = raw.VR or _implicit_vr(raw.tag)
    value: bytes = raw.value
    if vr in NUMBERS:
        return _json(vr, _numbers(value, NUMBERS[vr], raw.is_little_endian))
    if ESC in value:
        raise _Fallback
    if vr in STRINGS:
        return _json(vr, _split(value.decode(default_encoding).rstrip(" \x00")))
    if vr == "AE":
        return _json(vr, _split(value.decode(default_encoding), strip=True))
    if vr == "IS":
        return _json(vr, _typed(value.decode(default_encoding).rstrip(" \x00"), INTEGER, int))
    if vr == "DS":
        text = value.decode(default_encoding).strip().rstrip(" \x00")
        return _json(vr, _typed(text, DECIMAL, float))
    if encoding is None:
        raise _Fallback
    if vr in TEXTS:
        return _json(vr, [v.rstrip("\0 ") for v in value.decode(encoding).split("\\")])
    if vr in SINGLE_TEXTS:
        return _json(vr, [value.decode(encoding).rstrip("\0 ")])
    if vr == "PN":
        return _json(vr, _names(value.rstrip(b"\x00 ").decode(encoding)))
    raise _Fallback


def _implicit_vr(tag: int) -> str:
    if tag >> 16 & 1:
        raise _Fallback  # private: pydicom knows its private dictionaries
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise _Fallback from None
    if " or " in vr:
        raise _Fallback  # ambiguous: pydicom resolves it from the data set
    return vr


def _json(vr: str, values: list[Any]) -> dict[str, Any]:
    """pydicom's element JSON: no Value when empty (one empty value counts as none)."""
    if not values or (len(values) == 1 and values[0] == ""):
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _split(text: str, strip: bool = False) -> list[str]:
    values = text.split("\\")
    return [v.strip() for v in values] if strip else values


def _typed(text: str, pattern: re.Pattern[str], kind: type) -> list[Any]:
    values = text.split("\\")
    if values == [""]:
        return values
    if not all(pattern.fullmatch(v) for v in values):
        raise _Fallback  # empty items, ISfloat, nan, ...: pydicom's rules
    return [kind(v) for v in values]


def _numbers(value: bytes, code: str, little_endian: bool) -> list[Any]:
    size = struct.calcsize("=" + code)
    if len(value) % size:
        raise _Fallback
    count = len(value) // size
    return list(struct.unpack(("<" if little_endian else ">") + code * count, value))


def _names(text: str) -> list[Any]:
    if not text:
        return []
    names = text.split("\\")
    if any(not n or "=" in n for n in names):
        raise _Fallback  # empty names and component groups: pydicom's PersonName
    return [{"Alphabetic": n} for n in names]
