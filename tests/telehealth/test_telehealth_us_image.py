"""The ultrasound image builder on its own: irregular frame timing and lossless RLE."""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction

import pydicom
import pytest
from av import VideoFrame
from hubtest import dciodvfy_errors
from telehealth_support import cine_frames, psnr

from telehealth.us_image import (
    CaptureContext,
    build_instance,
    encode_frame,
    frame_timing,
    rle_lossless,
)
from telehealth.worklist import inline_image_attributes

# pts in 90 kHz ticks with a late frame and a dropped one: not one FrameTime.
IRREGULAR_PTS = [0, 3000, 6000, 10500, 13500, 19500, 22500]


def _frames(codec: str) -> list:
    encoded = []
    for i, pts in enumerate(IRREGULAR_PTS):
        frame = VideoFrame.from_ndarray(cine_frames()[i], format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, 90000)
        encoded.append(encode_frame(frame, codec, 90))
    return encoded


def _context(codec: str) -> CaptureContext:
    attrs = inline_image_attributes({"patient": {"id": "P-1", "name": "Test^Timing"}})
    now = datetime.now()
    return CaptureContext(attrs, pydicom.uid.generate_uid(), 900, 1, now, now, codec=codec)


def test_frame_timing_is_one_frame_time_only_when_regular() -> None:
    frame_time, vector = frame_timing([i / 30 for i in range(10)])
    assert frame_time == pytest.approx(33.333, abs=0.01) and vector is None
    frame_time, vector = frame_timing([p / 90000 for p in IRREGULAR_PTS])
    assert frame_time is None
    assert vector == pytest.approx([0, 33.33, 33.33, 50, 33.33, 66.67, 33.33], abs=0.01)


@pytest.mark.parametrize("codec", ["jpeg", "rle"])
def test_irregular_clip_gets_a_frame_time_vector(codec: str, tmp_path) -> None:
    path = tmp_path / f"{codec}.dcm"
    path.write_bytes(build_instance(_frames(codec), _context(codec)))
    ds = pydicom.dcmread(path)
    assert ds.FrameIncrementPointer == pydicom.tag.Tag("FrameTimeVector")
    assert len(ds.FrameTimeVector) == ds.NumberOfFrames == len(IRREGULAR_PTS)
    assert "FrameTime" not in ds
    for i, frame in enumerate(ds.pixel_array):
        floor = 60 if codec == "rle" else 35  # RLE: exact up to the rgb->yuv420 trip
        assert psnr(frame, cine_frames()[i]) > floor
    assert dciodvfy_errors(path) in ([], None)  # None: dicom3tools not installed


def test_a_frame_of_another_size_is_scaled_to_the_clip_size() -> None:
    small = VideoFrame.from_ndarray(cine_frames()[0], format="rgb24").reformat(
        width=480, height=360
    )
    small.pts, small.time_base = 0, Fraction(1, 90000)
    encoded = encode_frame(small, "jpeg", 90, size=(640, 480))
    assert (encoded.rows, encoded.columns) == (480, 640)


def test_no_frames_is_refused() -> None:
    with pytest.raises(ValueError, match="no frames"):
        build_instance([], _context("jpeg"))


def test_rle_frames_decode_exactly() -> None:
    rgb = cine_frames()[3]
    ds = pydicom.Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 480, 640, 3
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.RLELossless
    ds.PixelData = pydicom.encaps.encapsulate([rle_lossless(rgb)])
    ds["PixelData"].VR = "OB"
    # decoded by pydicom's own RLE decoder
    assert (ds.pixel_array == rgb).all()
