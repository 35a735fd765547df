"""Fluorescence and multiplex slides written at test time with tifffile: OME-TIFF pyramids with
channels (and Z, T), and a QPTIFF laid out as PerkinElmer/Akoya publish it.

Pixels are smooth per-channel patterns plus noise, so lossless codecs have real work and any
mix-up of channels, planes or tiles shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

FLUOROPHORES = [  # name, excitation nm, emission nm, display colour
    ("DAPI", 358, 461, (0, 0, 255)),
    ("FITC", 495, 519, (0, 255, 0)),
    ("Cy3", 550, 570, (255, 255, 0)),
    ("Cy5", 650, 670, (255, 0, 0)),
    ("Cy7", 750, 773, (255, 0, 255)),
]


@dataclass(frozen=True)
class Fluorescence:
    """A written fixture and the pixels it holds: planes[level][channel] (for the Z and T chosen)."""

    path: Path
    planes: list[list[np.ndarray]]
    names: list[str]
    mpp: float | None


def planes(channels: int, height: int, width: int, dtype, seed: int = 1) -> np.ndarray:
    """(channels, height, width) of ``dtype``: each channel its own pattern."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    low = np.iinfo(dtype).min
    yy, xx = np.mgrid[0:height, 0:width]
    out = np.empty((channels, height, width), dtype=dtype)
    for c in range(channels):
        wave = np.sin(xx / (17 + 9 * c)) * np.cos(yy / (23 + 5 * c))
        base = (wave + 1) / 2 * (top - low) * 0.8 + low
        noise = rng.integers(0, max(2, (top - low) // 20), size=(height, width))
        out[c] = np.clip(base + noise, low, top).astype(dtype)
    return out


def _ome_channel_metadata(count: int) -> dict:
    chosen = FLUOROPHORES[:count]
    colours = [int.from_bytes(bytes([*rgb, 255]), "big", signed=True) for *_, rgb in chosen]
    return {
        "Name": [name for name, *_ in chosen],
        "ExcitationWavelength": [ex for _, ex, _, _ in chosen],
        "EmissionWavelength": [em for _, _, em, _ in chosen],
        "Color": colours,
    }


def write_ome(
    path: Path,
    channels: int = 3,
    dtype=np.uint16,
    size: tuple[int, int] = (700, 600),  # height, width
    levels: int = 3,
    physical_size: float | None = 0.5,
    z: int = 1,
    t: int = 1,
    compression: str = "zlib",
    tile: int = 256,
) -> Fluorescence:
    """An OME-TIFF pyramid (levels in SubIFDs), axes TCZYX; planes returned for Z = T = 0."""
    height, width = size
    data = np.stack(
        [
            np.stack(
                [planes(channels, height, width, dtype, seed=1 + zi + 7 * ti) for zi in range(z)], 1
            )
            for ti in range(t)
        ]
    )  # T, C, Z, Y, X
    metadata: dict = {"axes": "TCZYX", "Channel": _ome_channel_metadata(channels)}
    if physical_size is not None:
        metadata.update(PhysicalSizeX=physical_size, PhysicalSizeY=physical_size)
    options = {"tile": (tile, tile), "compression": compression, "photometric": "minisblack"}
    pyramid = [data]
    for _ in range(levels - 1):
        pyramid.append(pyramid[-1][..., ::2, ::2])
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        tif.write(data, subifds=levels - 1, metadata=metadata, **options)
        for level in pyramid[1:]:
            tif.write(level, subfiletype=1, metadata=None, **options)
    return Fluorescence(
        path,
        [[np.ascontiguousarray(level[0, c, 0]) for c in range(channels)] for level in pyramid],
        [name for name, *_ in FLUOROPHORES[:channels]],
        physical_size,
    )


def _qpi_description(image_type: str, channel: int | None) -> str:
    """A <PerkinElmer-QPI-ImageDescription> as Vectra/PhenoImager write it per IFD."""
    parts = [
        '<?xml version="1.0" encoding="utf-16"?>',
        "<PerkinElmer-QPI-ImageDescription>",
        "<DescriptionVersion>2</DescriptionVersion>",
        "<AcquisitionSoftware>Vectra-QPI</AcquisitionSoftware>",
        f"<ImageType>{image_type}</ImageType>",
        "<Identifier>4b7e1f0c-2d3a-4e11-9c55-1f2e3d4c5b6a</Identifier>",
        "<SlideID>TEST-QPTIFF-1</SlideID>",
        "<Barcode></Barcode>",
        "<IsUnmixedComponent>False</IsUnmixedComponent>",
    ]
    if channel is not None:
        name, excitation, emission, rgb = FLUOROPHORES[channel]
        parts += [
            "<ExposureTime>250</ExposureTime>",
            "<SignalUnits>64</SignalUnits>",
            f"<Name>{name}</Name>",
            f"<Color>{rgb[0]},{rgb[1]},{rgb[2]}</Color>",
            "<Objective>20x</Objective>",
            f"<ExcitationFilter><Name>{name} ex</Name><Bands><Band>"
            f"<Cuton>{excitation - 10}</Cuton><Cutoff>{excitation + 10}</Cutoff>"
            "</Band></Bands></ExcitationFilter>",
            f"<EmissionFilter><Name>{name} em</Name><Bands><Band>"
            f"<Cuton>{emission - 15}</Cuton><Cutoff>{emission + 15}</Cutoff>"
            "</Band></Bands></EmissionFilter>",
        ]
    parts.append("</PerkinElmer-QPI-ImageDescription>")
    return "\r\n".join(parts)


def write_qptiff(
    path: Path,
    channels: int = 3,
    size: tuple[int, int] = (640, 512),
    levels: int = 3,
    um_per_pixel: float = 0.4962,
    shrink_channel: int | None = None,
    software: str = "PerkinElmer-QPI",
) -> Fluorescence:
    """A QPTIFF in the published IFD order: the full-resolution channel pages, an RGB
    thumbnail, each reduced resolution's channel pages (halving), an overview and a label.
    ``shrink_channel``: write that channel's full-resolution page smaller (a broken file)."""
    height, width = size
    data = planes(channels, height, width, np.uint8, seed=5)
    per_cm = 1e4 / um_per_pixel
    common = {
        "software": software,
        "photometric": "minisblack",
        "compression": "lzw",
        "metadata": None,
    }
    pyramid = [data]
    for _ in range(levels - 1):
        pyramid.append(pyramid[-1][:, ::2, ::2])
    with tifffile.TiffWriter(path, bigtiff=False, ome=False, shaped=False) as tif:
        for index, level in enumerate(pyramid):
            if index == 1:  # the thumbnail sits between full and reduced resolutions
                thumb = np.ascontiguousarray(
                    np.stack([data[c % channels, ::8, ::8] for c in range(3)], -1)
                )
                tif.write(
                    thumb,
                    photometric="rgb",
                    compression="jpeg",
                    software="PerkinElmer-QPI",
                    description=_qpi_description("Thumbnail", None),
                    subfiletype=1,
                    metadata=None,
                )
            kind = "FullResolution" if index == 0 else "ReducedResolution"
            scale = per_cm / 2**index
            for c in range(channels):
                plane = level[c]
                if index == 0 and c == shrink_channel:
                    plane = plane[: height // 2, : width // 2]
                tif.write(
                    plane,
                    tile=(128, 128),
                    resolution=(scale, scale),
                    resolutionunit="CENTIMETER",
                    description=_qpi_description(kind, c),
                    subfiletype=0 if index == 0 else 1,
                    **common,
                )
        glass = np.full((120, 300, 3), 200, dtype=np.uint8)
        for kind, image in (("Overview", glass), ("Label", glass[:, :100])):
            tif.write(
                np.ascontiguousarray(image),
                photometric="rgb",
                compression="lzw",
                software="PerkinElmer-QPI",
                description=_qpi_description(kind, None),
                subfiletype=1,
                metadata=None,
            )
    return Fluorescence(
        path,
        [[np.ascontiguousarray(level[c]) for c in range(channels)] for level in pyramid],
        [name for name, *_ in FLUOROPHORES[:channels]],
        um_per_pixel,
    )


def corrupt_tile(path: Path, page_index: int, tile: int = 1) -> None:
    """Overwrite the middle of one compressed tile of a top-level page with garbage."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[page_index]
        offset, count = page.dataoffsets[tile], page.databytecounts[tile]
    with open(path, "r+b") as f:
        f.seek(offset + count // 4)
        f.write(bytes(range(7, 7 + count // 2 % 200)) * 2)
