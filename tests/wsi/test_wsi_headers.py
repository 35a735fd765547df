"""Instance headers come from a helper process for single-threaded callers, in-process otherwise;
both give the same attributes, and the helper reports errors and ends with the conversion.

The test runner may have threads of its own running (earlier tests leave executor threads
behind), and then ``Headers`` never forks: the helper-process checks run in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from io import BytesIO

import pydicom
import pytest

from wsi.headers import Headers
from wsi.options import SlideIds
from wsi.sources.model import SlideInfo, SourceLevel

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
INSTANCE = {
    "kind": "VOLUME",
    "derived": False,
    "number": 1,
    "width": 512,
    "height": 256,
    "tile_width": 256,
    "tile_height": 256,
    "frames": 2,
    "photometric": "RGB",
    "lossy_history": [],
}


def _slide(tmp_path) -> SlideInfo:
    return SlideInfo(
        path=tmp_path / "synthetic.tiff",
        reader="tiff",
        vendor="test",
        levels=[SourceLevel(0, 512, 256, 1.0, 256, 256)],
        mpp=(0.25, 0.25),
    )


def _headers_in_thread(slide: SlideInfo) -> list:
    out: list = []

    def build() -> None:
        headers = Headers()
        try:
            headers.bind(slide, SlideIds(patient_id="P"), 1.0)
            out.append(headers.header(JPEG_BASELINE, **INSTANCE))
            out.append(headers._pid)
        finally:
            headers.close()

    thread = threading.Thread(target=build)
    thread.start()
    thread.join()
    return out


def _in_fresh_interpreter(check: str, tmp_path) -> None:
    """Run ``check(tmp_path)`` of this module in a new single-threaded Python."""
    code = (
        "import sys, pathlib; sys.path.insert(0, sys.argv[1]); import test_wsi_headers as t; "
        f"t.{check}(pathlib.Path(sys.argv[2]))"
    )
    here = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run(
        [sys.executable, "-c", code, here, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_helper_process_and_in_process_agree(tmp_path):
    _in_fresh_interpreter("check_helper_agrees_with_in_process", tmp_path)


def test_helper_reports_errors_and_keeps_serving(tmp_path):
    _in_fresh_interpreter("check_helper_reports_errors", tmp_path)


def check_helper_agrees_with_in_process(tmp_path) -> None:
    assert threading.active_count() == 1
    slide = _slide(tmp_path)
    headers = Headers()
    try:
        assert headers._pid > 0
        headers.bind(slide, SlideIds(patient_id="P"), 1.0)
        forked = pydicom.dcmread(BytesIO(headers.header(JPEG_BASELINE, **INSTANCE)))
        pid = headers._pid
    finally:
        headers.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped by close()
    local_bytes, local_pid = _headers_in_thread(slide)
    assert local_pid == 0
    local = pydicom.dcmread(BytesIO(local_bytes))
    for keyword in ("PatientID", "TotalPixelMatrixColumns", "NumberOfFrames", "ImageType"):
        assert forked[keyword].value == local[keyword].value
    assert forked.file_meta.TransferSyntaxUID == JPEG_BASELINE


def check_helper_reports_errors(tmp_path) -> None:
    headers = Headers()
    assert headers._pid > 0
    try:
        headers.bind(_slide(tmp_path), SlideIds(), 1.0)
        with pytest.raises(RuntimeError, match="TypeError"):
            headers.header(JPEG_BASELINE, **INSTANCE, no_such_attribute=1)
        study = pydicom.dcmread(BytesIO(headers.header(JPEG_BASELINE, **INSTANCE))).StudyInstanceUID
        again = pydicom.dcmread(BytesIO(headers.header(JPEG_BASELINE, **INSTANCE))).StudyInstanceUID
        assert study == again  # one study for every instance of the slide
    finally:
        headers.close()
