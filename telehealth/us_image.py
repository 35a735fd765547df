"""Captured video frames -> DICOM Ultrasound Image / Ultrasound Multi-frame Image (Part 10 bytes).

Everything here is CPU work and runs in an executor: ``encode_frame`` for each frame as it
arrives, ``build_instance`` once the capture ends.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import imagecodecs
import numpy as np
from av import VideoFrame
from PIL import Image
from pydicom import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import (
    JPEGBaseline8Bit,
    RLELossless,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

Codec = Literal["jpeg", "rle"]
FRAME_TIME = Tag("FrameTime")
FRAME_TIME_VECTOR = Tag("FrameTimeVector")
# Frame intervals within this fraction of their mean are written as one FrameTime.
UNIFORM_TOLERANCE = 0.1


@dataclass(frozen=True)
class EncodedFrame:
    data: bytes
    rows: int
    columns: int
    seconds: float  # presentation time of the frame (pts * time_base)


@dataclass(frozen=True)
class Calibration:
    """One ultrasound region with its physical pixel spacing (SequenceOfUltrasoundRegions)."""

    x0: int
    y0: int
    x1: int
    y1: int
    delta_x_cm: float
    delta_y_cm: float
    spatial_format: int = 1  # 2D
    data_type: int = 1  # tissue

    @classmethod
    def from_json(cls, value: dict) -> Calibration:
        try:
            region = [int(v) for v in value["region"]]
            x0, y0, x1, y1 = region
            calibration = cls(
                x0, y0, x1, y1, float(value["delta_x_cm"]), float(value["delta_y_cm"])
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                "calibration needs region [x0, y0, x1, y1], delta_x_cm, delta_y_cm"
            ) from None
        if (
            not (0 <= x0 < x1 and 0 <= y0 < y1)
            or calibration.delta_x_cm <= 0
            or calibration.delta_y_cm <= 0
        ):
            raise ValueError("calibration region or deltas are out of range")
        return calibration


@dataclass
class CaptureContext:
    """What an instance needs besides its frames: identity, series, equipment, worklist."""

    attributes: Dataset  # patient/study/request attributes from the worklist (Annex J)
    series_uid: str
    series_number: int
    instance_number: int
    study_datetime: datetime
    acquired: datetime
    codec: Codec = "jpeg"
    jpeg_quality: int = 90
    manufacturer: str = "Tessera"
    station_name: str = ""
    stream_codec: str = ""  # the WebRTC codec the frames travelled in, e.g. "VP8"
    # Recorded at the clinic from the device's own video before any network encoding (a
    # source capture), rather than cut from the relayed stream at the hub.
    from_source: bool = False
    calibration: Calibration | None = None
    operator: str = ""
    sop_instance_uid: str = field(default_factory=generate_uid)


def encode_frame(
    frame: VideoFrame, codec: Codec, quality: int, size: tuple[int, int] | None = None
) -> EncodedFrame:
    """Encode one frame, scaled to ``size`` (width, height) if the stream's size differs:
    a video encoder under pressure may lower the resolution for a while (libvpx spatial
    resampling), and a clip, like the calibration, keeps one image size."""
    if size is not None and (frame.width, frame.height) != size:
        frame = frame.reformat(width=size[0], height=size[1], format="rgb24")
    rgb = frame.to_ndarray(format="rgb24")
    seconds = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
    return EncodedFrame(encode_rgb(rgb, codec, quality), rgb.shape[0], rgb.shape[1], seconds)


def encode_rgb(rgb: np.ndarray, codec: Codec, quality: int) -> bytes:
    if codec == "jpeg":
        buffer = io.BytesIO()
        # subsampling=1 is 4:2:2; Pillow writes full-range JFIF YCbCr -> YBR_FULL_422.
        Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, subsampling=1)
        return buffer.getvalue()
    return rle_lossless(rgb)


def rle_lossless(rgb: np.ndarray) -> bytes:
    """One RGB frame as DICOM RLE Lossless (PS3.5 Annex G): a segment per colour plane.

    The PackBits runs come from imagecodecs (row by row, as Annex G requires); only the
    64-byte segment table is written here. imagecodecs has no DICOM RLE encoder
    (dicomrle_encode is decode-only) and pydicom's is pure Python, ~90 ms a 640x480 frame,
    too slow to keep up with a 30 fps clip; this takes ~2 ms.
    """
    segments = []
    for plane in range(rgb.shape[2]):
        data = imagecodecs.packbits_encode(np.ascontiguousarray(rgb[:, :, plane]), axis=-1)
        segments.append(data + b"\0" * (len(data) % 2))  # segments have even length
    offsets, position = [], 64
    for data in segments:
        offsets.append(position)
        position += len(data)
    header = struct.pack("<16L", len(segments), *offsets, *[0] * (15 - len(segments)))
    return header + b"".join(segments)


def frame_timing(seconds: list[float]) -> tuple[float | None, list[float] | None]:
    """FrameTime (ms) when the intervals are regular, else FrameTimeVector (ms, first 0)."""
    intervals = np.diff(np.asarray(seconds, dtype=float)) * 1000.0
    if len(intervals) == 0:
        return None, None
    mean = float(intervals.mean())
    if mean > 0 and np.all(np.abs(intervals - mean) <= UNIFORM_TOLERANCE * mean):
        return mean, None
    return None, [0.0, *(max(float(i), 0.0) for i in intervals)]


def build_instance(frames: list[EncodedFrame], context: CaptureContext) -> bytes:
    if not frames:
        raise ValueError("no frames to store")
    first = frames[0]
    if any((f.rows, f.columns) != (first.rows, first.columns) for f in frames):
        raise ValueError("the frames of one instance must have one size")
    multi = len(frames) > 1
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage
    ds.SOPInstanceUID = context.sop_instance_uid
    ds.update(context.attributes)
    _study_series_equipment(ds, context)
    _image(ds, context)
    _pixels(ds, frames, context)
    if multi:
        _cine(ds, frames)
    if context.calibration:
        ds.SequenceOfUltrasoundRegions = [_region(context.calibration)]

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit if context.codec == "jpeg" else RLELossless
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _study_series_equipment(ds: Dataset, context: CaptureContext) -> None:
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        if keyword not in ds:
            setattr(ds, keyword, "")
    for keyword in ("AccessionNumber", "ReferringPhysicianName", "StudyID"):
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.StudyDate = context.study_datetime.strftime("%Y%m%d")
    ds.StudyTime = context.study_datetime.strftime("%H%M%S")
    ds.Modality = "US"
    ds.SeriesInstanceUID = context.series_uid
    ds.SeriesNumber = context.series_number
    ds.Laterality = ""  # Type 2C: the scanned part is not known to be paired
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.SeriesDescription = "Telehealth guidance capture"
    if context.operator:
        ds.OperatorsName = context.operator
    ds.Manufacturer = context.manufacturer
    ds.ManufacturerModelName = "Tessera telehealth"
    if context.station_name:
        ds.StationName = context.station_name[:16]
    ds.SoftwareVersions = "tessera-hub"


def _image(ds: Dataset, context: CaptureContext) -> None:
    ds.InstanceNumber = context.instance_number
    ds.PatientOrientation = ""
    ds.ContentDate = context.acquired.strftime("%Y%m%d")
    ds.ContentTime = context.acquired.strftime("%H%M%S.%f")
    ds.AcquisitionDateTime = context.acquired.strftime("%Y%m%d%H%M%S.%f")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "0001"]  # value 4: 2D imaging mode bitmap
    ds.BurnedInAnnotation = "NO"
    if context.from_source:
        return  # the device's own image, not derived from anything
    description = "Captured from the clinic's live WebRTC video"
    if context.stream_codec:
        description += f" ({context.stream_codec})"
    ds.DerivationDescription = description


def _pixels(ds: Dataset, frames: list[EncodedFrame], context: CaptureContext) -> None:
    ds.Rows = frames[0].rows
    ds.Columns = frames[0].columns
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422" if context.codec == "jpeg" else "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    # Stream captures crossed a lossy video codec on the way here, whatever the stored syntax;
    # a source capture stored losslessly never met a lossy step.
    lossless = context.from_source and context.codec == "rle"
    ds.LossyImageCompression = "00" if lossless else "01"
    if context.codec == "jpeg":
        raw = ds.Rows * ds.Columns * 3 * len(frames)
        ratio = raw / sum(len(f.data) for f in frames)
        ds.LossyImageCompressionRatio = f"{ratio:.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate([f.data for f in frames], has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def _cine(ds: Dataset, frames: list[EncodedFrame]) -> None:
    frame_time, vector = frame_timing([f.seconds for f in frames])
    if frame_time is not None:
        ds.FrameTime = f"{frame_time:.4g}"
        ds.FrameIncrementPointer = FRAME_TIME
        rate = 1000.0 / frame_time
    else:
        ds.FrameTimeVector = [f"{v:.4g}" for v in vector or [0.0]]
        ds.FrameIncrementPointer = FRAME_TIME_VECTOR
        duration = frames[-1].seconds - frames[0].seconds
        rate = (len(frames) - 1) / duration if duration > 0 else 0.0
    if rate > 0:
        ds.RecommendedDisplayFrameRate = max(1, round(rate))
        ds.CineRate = max(1, round(rate))
    ds.EffectiveDuration = f"{frames[-1].seconds - frames[0].seconds:.4g}"
    ds.PreferredPlaybackSequencing = 0
    ds.StartTrim = 1
    ds.StopTrim = len(frames)


def _region(c: Calibration) -> Dataset:
    region = Dataset()
    region.RegionSpatialFormat = c.spatial_format
    region.RegionDataType = c.data_type
    region.RegionFlags = 0
    region.RegionLocationMinX0 = c.x0
    region.RegionLocationMinY0 = c.y0
    region.RegionLocationMaxX1 = c.x1
    region.RegionLocationMaxY1 = c.y1
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = c.delta_x_cm
    region.PhysicalDeltaY = c.delta_y_cm
    return region
