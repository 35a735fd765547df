"""Caller-facing settings of a conversion: identifiers and encoding options."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

CODECS = ("passthrough-or-jpeg", "jpeg", "jpeg2000-lossless", "jpegls-lossless")
JPEG_MODES = ("rgb", "ycbcr420")


@dataclass(frozen=True)
class SlideIds:
    """Patient/study/specimen identifiers written into every instance of the slide."""

    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    accession: str = ""
    study_uid: str | None = None
    study_id: str = ""
    study_description: str = ""
    series_description: str = ""
    specimen_id: str | None = None  # ContainerIdentifier; default: the source file name stem
    issuer: str = ""  # issuer of the container/specimen identifier
    referring_physician: str = ""


@dataclass(frozen=True)
class ConvertOptions:
    """How to encode the pyramid.

    ``codec``: 'passthrough-or-jpeg' copies JPEG/JPEG 2000 source tiles and re-encodes everything
    else as JPEG (the channels of a fluorescence source: losslessly, as JPEG-LS); the other values
    re-encode every tile with that codec.
    ``jpeg_mode`` for tiles this converter encodes as JPEG: 'rgb' (default; no colour transform,
    4:4:4, all channels at luminance precision: >= 40 dB PSNR on the test corpus at quality 90)
    or 'ycbcr420' (the common YCbCr 4:2:0: about half the size and twice as fast to encode, but
    saturated colour edges lose detail; 26-38 dB on the corpus' fluorescence and synthetic slides).
    ``progressive``: hand each instance over (rename it into the output folder, then call the
    ``on_instance`` callback) as soon as it is written, smallest first: thumbnail, label,
    overview, the pyramid from its smallest level up, level 0 last. Without it the instances are
    all moved into place at the end, in one step.
    ``fallback_mpp``: micrometres per pixel assumed at level 0 when the source records no pixel
    spacing and no objective power (otherwise 10 / objective power is assumed); either assumption
    is written into ImageComments.
    ``z``, ``t``: which Z plane and time point of a multi-channel source become the slide.
    """

    codec: str = "passthrough-or-jpeg"
    jpeg_quality: int = 90
    jpeg_mode: str = "rgb"
    tile_size: int | None = None
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    level_factor: int = 2
    min_level_size: int = 1024
    include_label: bool = True
    include_overview: bool = True
    include_thumbnail: bool = True
    fallback_mpp: float = 1.0
    progressive: bool = False
    z: int = 0  # the Z plane and time point of a multi-plane source to convert (from 0)
    t: int = 0

    def __post_init__(self) -> None:
        from wsi.errors import ConversionError

        if self.codec not in CODECS:
            choices = ", ".join(CODECS)
            raise ConversionError(f"unknown codec {self.codec!r}; choose one of {choices}")
        if self.jpeg_mode not in JPEG_MODES:
            raise ConversionError(f"unknown JPEG mode {self.jpeg_mode!r}; choose rgb or ycbcr420")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConversionError(f"JPEG quality must be 1..100, not {self.jpeg_quality}")
        if self.tile_size is not None and not 16 <= self.tile_size <= 4096:
            raise ConversionError(f"tile size must be 16..4096, not {self.tile_size}")
        if self.level_factor < 2:
            raise ConversionError(f"level factor must be at least 2, not {self.level_factor}")
        if self.z < 0 or self.t < 0:
            raise ConversionError(f"Z plane and time point count from 0, not {self.z}, {self.t}")
        if self.workers < 1:
            raise ConversionError(f"workers must be at least 1, not {self.workers}")
