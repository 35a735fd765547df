"""What the converter knows about a source slide, independent of the library that read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Passthrough:
    """Compressed tiles of one source level that can be copied into DICOM frames as they are."""

    codec: str  # 'jpeg' | 'jpeg2000'
    photometric: str  # DICOM PhotometricInterpretation of the copied frames
    transfer_syntax: str
    lossy: bool
    method: str  # LossyImageCompressionMethod
    prefix: bytes  # JPEG: replaces each tile's SOI (SOI + APP14? + tables); JPEG 2000: empty
    strip: int  # bytes dropped from the start of each tile (2 = the JPEG SOI)
    offsets: np.ndarray
    bytecounts: np.ndarray
    # The frames are cut from the source's JPEG in the DCT domain (NDPI stripes, wsi.sources.ndpi),
    # not copied from these offsets, which then only tell the size of the compressed data.
    retiled: bool = False

    @property
    def rgb(self) -> bool:
        return self.photometric == "RGB"


@dataclass(frozen=True)
class SourceLevel:
    index: int  # level number for the region reader
    width: int
    height: int
    downsample: float  # level-0 width / this width
    tile_width: int
    tile_height: int
    passthrough: Passthrough | None = None


@dataclass(frozen=True)
class Associated:
    kind: str  # 'LABEL' | 'OVERVIEW' | 'THUMBNAIL'
    name: str  # the reader's key, e.g. OpenSlide 'macro'


@dataclass(frozen=True)
class Channel:
    """One fluorescence channel (an optical path of the output) and what the source says of it."""

    name: str
    excitation_nm: float | None = None
    emission_nm: float | None = None
    color: tuple[int, int, int] | None = None  # the source's display colour, 0..255


@dataclass(frozen=True)
class ChannelPlanes:
    """How the channels of a multi-channel TIFF are stored: the plane chosen and the samples."""

    z: int  # the Z plane and T point converted
    t: int
    dtype: str  # the source's sample type, e.g. 'uint16'
    bits: int  # 8 or 16: the output's BitsAllocated and BitsStored
    shift: int  # added to each sample: signed sources are moved into the unsigned range


@dataclass
class SlideInfo:
    path: Path
    reader: str  # 'openslide' | 'tiff': which library decodes regions
    vendor: str
    levels: list[SourceLevel]
    associated: list[Associated] = field(default_factory=list)
    mpp: tuple[float, float] | None = None  # (x, y) micrometres per pixel at level 0
    objective_power: float | None = None
    icc_profile: bytes | None = None
    acquired: datetime | None = None
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    software: str = ""
    source_compression: tuple[str, float | None] | None = None  # (method, ratio) if lossy
    # A fluorescence source: one output optical path per channel (MONOCHROME2), or for an RGB
    # fluorescence scan (one channel given) one RGB optical path with that illumination.
    channels: list[Channel] = field(default_factory=list)
    planes: ChannelPlanes | None = None  # set when each channel is a plane of its own
    notes: list[str] = field(default_factory=list)  # warnings about the source, for the output

    @property
    def width(self) -> int:
        return self.levels[0].width

    @property
    def height(self) -> int:
        return self.levels[0].height
