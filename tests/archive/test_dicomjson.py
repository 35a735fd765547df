"""The hand-written DICOM JSON gives pydicom's result, on every file of pydicom's test data."""

from __future__ import annotations

from pathlib import Path

import data_store
import pydicom.data
import pytest
from pydicom import Dataset
from pydicom.filereader import read_partial

from hub.archive import dicomjson
from hub.archive.parse import _at_pixel_data, _take_bulk

FOLDERS = [Path(pydicom.data.__file__).parent / "test_files", Path(data_store.__file__).parent]
FILES = sorted({str(p) for folder in FOLDERS for p in folder.rglob("*.dcm")})


def _header(path: Path):
    with open(path, "rb") as f:
        ds = read_partial(f, stop_when=_at_pixel_data, defer_size=1024)
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    _take_bulk(ds, ts)
    return ds


def _both(path: Path):
    try:
        expected = _header(path).to_json_dict(bulk_data_threshold=dicomjson.NO_BULK)
    except Exception as exc:  # pydicom refuses the file: so must the fast path, unless for
        # an IS or DS value that is not a number, which it leaves out
        invalid: list[str] = []
        try:
            dicomjson.dataset_json(_header(path), invalid)
        except type(exc):
            return None, None
        assert invalid, f"pydicom refuses {path.name} ({exc}), the fast path does not"
        return None, None
    return dicomjson.dataset_json(_header(path)), expected


@pytest.mark.parametrize("path", FILES, ids=[Path(p).name for p in FILES])
def test_same_json_as_pydicom(path: str) -> None:
    got, expected = _both(Path(path))
    assert got == expected


def test_an_integer_string_that_is_no_integer_is_left_out() -> None:
    path = FOLDERS[0] / "badVR.dcm"
    with pytest.raises(ValueError):  # pydicom's JSON refuses it
        _header(path).to_json_dict(bulk_data_threshold=dicomjson.NO_BULK)
    invalid: list[str] = []
    got = dicomjson.dataset_json(_header(path), invalid)
    assert got["00280008"] == {"vr": "IS"}  # readable by clients that take IS as a number
    assert Dataset.from_json(got).NumberOfFrames is None
    assert invalid == ["Number of Frames (0028,0008) '1A' is not a valid IS"]


def test_the_test_data_exercises_the_fast_path() -> None:
    assert len(FILES) > 50
    ds = _header(FOLDERS[0] / "CT_small.dcm")
    handled = 0
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts its elements)
        try:
            dicomjson._element(ds.get_item(tag, keep_deferred=True), "latin_1")
            handled += 1
        except dicomjson._Fallback:
            pass
    assert handled > 0.8 * len(ds)


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO_IR 192"])
def test_same_json_for_awkward_values(tmp_path: Path, implicit: bool, charset: str | None) -> None:
    from pydicom import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7\0"
    ds.ImageType = "ORIGINAL\\\\PRIMARY "
    ds.add_new(0x00200013, "IS", " 12 ")
    ds.add_new(0x00280034, "IS", "1\\1.0")
    ds.add_new(0x00280030, "DS", " 0.5\\.25e1 ")
    ds.add_new(0x00181050, "DS", "1\\\\2")
    ds.add_new(0x00101010, "AS", "")
    ds.PatientName = "Müller^Jörg\\Doe=Yamada"
    ds.ReferringPhysicianName = "Smith^J"
    ds.StudyDescription = "Ünïcödé  "
    ds.add_new(0x00204000, "LT", "line one\r\nline two\\ with backslash  ")
    ds.add_new(0x00180015, "CS", "  CHEST\\")
    ds.add_new(0x00280010, "US", 512)
    ds.add_new(0x00281101, "US", [4096, 0, 16])
    ds.add_new(0x00186011, "SQ", [Dataset()])
    ds.add_new(0x00090010, "LO", "PRIVATE CREATOR")
    ds.add_new(0x00091001, "LO", "private value")
    ds.Manufacturer = "x" * 2000  # deferred on reading
    path = tmp_path / "awkward.dcm"
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.save_as(path, enforce_file_format=True)
    got, expected = _both(path)
    assert got == expected
