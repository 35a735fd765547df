"""Vendor slides written at test time for formats the corpus has no sample of (Aperio JPEG 2000,
Philips TIFF, Leica SCN), each detected by OpenSlide as the vendor's, with tissue pixels from the
corpus; ``SLIDES`` lists them for the conversion gates the corpus slides pass (conftest.py).

The layouts follow what OpenSlide's drivers check and use (openslide-vendor-philips-tiff.c,
openslide-vendor-leica.c):

- Philips: Software starts with "Philips", ImageDescription of directory 0 is XML whose root is
  <DataObject ObjectType="DPUfsImport"> with exactly one WSI image in PIM_DP_SCANNED_IMAGES and one
  PixelDataRepresentation (holding DICOM_PIXEL_SPACING, "row col" in mm) per tiled directory. Levels
  are top-level tiled directories, the later ones marked reduced-resolution, each padded to whole
  tiles in the TIFF; OpenSlide reports level i as level 0 // downsample, the downsample being the
  rounded ratio of the pixel spacings. Label and macro are untiled directories whose
  ImageDescription starts with "Label" / "Macro".
- Leica: BigTIFF, directory 0 tiled, ImageDescription XML in the SCN namespace: a <collection>
  (size in nm) of <image>s, each with a <view> (size and offset in nm), brightfield illumination,
  an objective and <pixels><dimension ifd= r=/></pixels>. The image covering the whole collection
  is the macro; OpenSlide's levels span the whole collection (ceil(collection / nm per pixel)) with
  the main image pasted at its offset, and mpp comes from the main level-0 directory's XResolution
  (pixels per cm).

Philips and Leica tiles are abbreviated YCbCr 4:2:0 JPEG streams sharing one JPEGTables tag, as
libtiff writes them.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import openslide
import pydicom
import tifffile
from pydicom.encaps import generate_frames

from wsi.codestream import EOI, SOI

TILE = 256
QUALITY = 85
_TABLE_MARKERS = {0xDB, 0xC4}  # DQT, DHT: moved into JPEGTables
_DROPPED_MARKERS = {0xE0}  # JFIF APP0: libtiff's tiles carry none


def tissue(corpus: Path, width: int, height: int) -> np.ndarray:
    """Real tissue pixels (CMU-1 level 0, tiled) so that PSNR means something."""
    base = tifffile.imread(corpus / "wsi" / "CMU-1-Small-Region.svs", key=0)
    reps = (-(-height // base.shape[0]), -(-width // base.shape[1]), 1)
    return np.ascontiguousarray(np.tile(base, reps)[:height, :width])


def tissue_thumbnail(pixels: np.ndarray, factor: int) -> np.ndarray:
    return np.ascontiguousarray(pixels[::factor, ::factor])


def halve(pixels: np.ndarray) -> np.ndarray:
    """2x2 box filter (odd edges dropped), the way a scanner builds its next level."""
    h, w = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
    blocks = pixels[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).astype(np.uint16)
    return ((blocks.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)


def _segments(stream: bytes) -> Iterator[tuple[int, bytes]]:
    """(marker, whole segment) from after SOI up to, not including, SOS."""
    pos = 2
    while stream[pos + 1] != 0xDA:
        length = int.from_bytes(stream[pos + 2 : pos + 4], "big")
        yield stream[pos + 1], stream[pos : pos + 2 + length]
        pos += 2 + length


def abbreviate(stream: bytes) -> tuple[bytes, bytes]:
    """A complete JPEG -> (JPEGTables, abbreviated tile without tables or JFIF)."""
    segments = list(_segments(stream))
    header_end = 2 + sum(len(seg) for _, seg in segments)
    tables = b"".join(seg for marker, seg in segments if marker in _TABLE_MARKERS)
    kept = b"".join(
        seg for marker, seg in segments if marker not in _TABLE_MARKERS | _DROPPED_MARKERS
    )
    return SOI + tables + EOI, SOI + kept + stream[header_end:]


@dataclass(frozen=True)
class EncodedLevel:
    tiles: list[bytes]
    tables: bytes
    shape: tuple[int, int, int]  # of the TIFF image


def encode_level(pixels: np.ndarray, size: tuple[int, int]) -> EncodedLevel:
    """JPEG-encode a TIFF image of `size` (width, height) tile by tile; whatever `pixels` do not
    cover, including the part of the edge tiles outside the image, is white."""
    width, height = size
    canvas = np.full((*whole_tiles(width, height)[::-1], 3), 255, np.uint8)
    canvas[: min(height, pixels.shape[0]), : min(width, pixels.shape[1])] = pixels[:height, :width]
    tiles, tables = [], set()
    for y in range(0, canvas.shape[0], TILE):
        for x in range(0, canvas.shape[1], TILE):
            tile = np.ascontiguousarray(canvas[y : y + TILE, x : x + TILE])
            full = imagecodecs.jpeg8_encode(
                tile, level=QUALITY, colorspace="RGB", outcolorspace="YCBCR", subsampling="420"
            )
            table, abbreviated = abbreviate(bytes(full))
            tables.add(table)
            tiles.append(abbreviated)
    assert len(tables) == 1, "tiles must share one set of tables"
    return EncodedLevel(tiles, tables.pop(), (height, width, 3))


def write_tiled(tif: tifffile.TiffWriter, level: EncodedLevel, **tags) -> None:
    tif.write(
        iter(level.tiles),
        shape=level.shape,
        dtype=np.uint8,
        tile=(TILE, TILE),
        compression="jpeg",
        photometric="ycbcr",
        subsampling=(2, 2),
        jpegtables=level.tables,
        metadata=None,
        **tags,
    )


def whole_tiles(width: int, height: int) -> tuple[int, int]:
    return math.ceil(width / TILE) * TILE, math.ceil(height / TILE) * TILE


# --- Philips -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhilipsLayout:
    spacing_mm: tuple[float, float]  # level-0 (column, row) spacing, i.e. (x, y)
    padded: list[tuple[int, int]]  # TIFF (width, height) of each level, whole tiles
    acquired: str = "20210315101112.000000"


def _philips_spacing(layout: PhilipsLayout, downsample: int) -> str:
    x, y = layout.spacing_mm
    return f'"{y * downsample:.9g}" "{x * downsample:.9g}"'  # row spacing first, as in DICOM


def _attr(name: str, value: str, vr: str = "IString") -> str:
    return f'<Attribute Name="{name}" PMSVR="{vr}">{value}</Attribute>'


def philips_xml(layout: PhilipsLayout) -> str:
    representations = "".join(
        '<DataObject ObjectType="PixelDataRepresentation">'
        + _attr("DICOM_PIXEL_SPACING", _philips_spacing(layout, 2**i), "IDoubleArray")
        + _attr("PIIM_PIXEL_DATA_REPRESENTATION_NUMBER", str(i), "IUInt16")
        + "</DataObject>"
        for i in range(len(layout.padded))
    )
    wsi = (
        '<DataObject ObjectType="DPScannedImage">'
        + _attr("DICOM_PIXEL_SPACING", _philips_spacing(layout, 1), "IDoubleArray")
        + _attr("PIM_DP_IMAGE_TYPE", "WSI")
        + _attr("PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE", f"<Array>{representations}</Array>")
        + "</DataObject>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<DataObject ObjectType="DPUfsImport">'
        + _attr("DICOM_ACQUISITION_DATETIME", layout.acquired)
        + _attr("DICOM_MANUFACTURER", "PHILIPS")
        + _attr("DICOM_SOFTWARE_VERSIONS", '"1.6.6186"', "IStringArray")
        + _attr("PIM_DP_SCANNED_IMAGES", f"<Array>{wsi}</Array>", "IDataObjectArray")
        + "</DataObject>"
    )


def write_philips(path: Path, level0: np.ndarray, layout: PhilipsLayout) -> None:
    xml = philips_xml(layout)
    pixels = level0
    with tifffile.TiffWriter(path) as tif:
        for i, padded in enumerate(layout.padded):
            first = {"description": xml, "software": "Philips DP v1.0"} if i == 0 else {}
            write_tiled(tif, encode_level(pixels, padded), subfiletype=1 if i else 0, **first)
            pixels = halve(pixels)
        label = np.full((300, 400, 3), 250, np.uint8)
        label[100:200, 50:350] = 20  # a dark "barcode" block
        macro = tissue_thumbnail(level0, 8)
        for name, image in (("Label", label), ("Macro", macro)):
            tif.write(image, photometric="rgb", compression="jpeg", description=name, metadata=None)


# --- Leica -------------------------------------------------------------------------------------

LEICA_NS = "http://www.leica-microsystems.com/scn/2010/10/01"


@dataclass(frozen=True)
class LeicaImage:
    name: str
    view_nm: tuple[int, int, int, int]  # sizeX, sizeY, offsetX, offsetY
    sizes: list[tuple[int, int]]  # pixel sizes of its dimensions, largest first
    first_ifd: int
    objective: str


@dataclass(frozen=True)
class LeicaLayout:
    collection_nm: tuple[int, int]
    macro: LeicaImage
    main: LeicaImage
    created: str = "2013-05-21T09:54:51.15Z"
    barcode: str = "TESSERA-0042"

    @property
    def main_mpp(self) -> float:
        return self.main.view_nm[0] / self.main.sizes[0][0] / 1000.0


def _leica_image(image: LeicaImage, created: str) -> str:
    sx, sy, ox, oy = image.view_nm
    dimensions = "".join(
        f'<dimension sizeX="{w}" sizeY="{h}" r="{r}" ifd="{image.first_ifd + r}"/>'
        for r, (w, h) in enumerate(image.sizes)
    )
    w0, h0 = image.sizes[0]
    return (
        f'<image name="{image.name}">'
        f"<creationDate>{created}</creationDate>"
        '<device model="Leica SCN400;Leica SCN" version="1.5.1.10804 2012/05/10 13:29:07"/>'
        f'<pixels sizeX="{w0}" sizeY="{h0}">{dimensions}</pixels>'
        f'<view sizeX="{sx}" sizeY="{sy}" offsetX="{ox}" offsetY="{oy}" spacingZ="0"/>'
        "<scanSettings>"
        f"<objectiveSettings><objective>{image.objective}</objective></objectiveSettings>"
        "<illuminationSettings><numericalAperture>0.4</numericalAperture>"
        "<illuminationSource>brightfield</illuminationSource></illuminationSettings>"
        "</scanSettings></image>"
    )


def leica_xml(layout: LeicaLayout) -> str:
    cx, cy = layout.collection_nm
    barcode = base64.b64encode(layout.barcode.encode()).decode()
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<scn xmlns="{LEICA_NS}">'
        f'<collection name="tessera" sizeX="{cx}" sizeY="{cy}"><barcode>{barcode}</barcode>'
        + _leica_image(layout.macro, layout.created)
        + _leica_image(layout.main, layout.created)
        + "</collection></scn>"
    )


def write_leica(path: Path, main: np.ndarray, macro: np.ndarray, layout: LeicaLayout) -> None:
    """Directory 0 is the macro image (tiled, carrying the XML), then the main image's levels."""
    pixels_per_cm = 1e4 / layout.main_mpp
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        xml = {"description": leica_xml(layout)}
        for w, h in layout.macro.sizes:
            write_tiled(tif, encode_level(_fit(macro, w, h), (w, h)), **xml)
            xml = {}
        pixels = main
        for i, (w, h) in enumerate(layout.main.sizes):
            res = pixels_per_cm * w / layout.main.sizes[0][0]
            write_tiled(
                tif,
                encode_level(_fit(pixels, w, h), (w, h)),
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                subfiletype=1 if i else 0,
            )
            pixels = halve(halve(pixels))  # Leica levels are 4x apart


def _fit(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize: good enough for a macro photograph."""
    ys = np.arange(height) * pixels.shape[0] // height
    xs = np.arange(width) * pixels.shape[1] // width
    return np.ascontiguousarray(pixels[ys][:, xs])


# --- OpenSlide as the reference ----------------------------------------------------------------


def openslide_reference(source: openslide.OpenSlide, width: int, height: int) -> np.ndarray:
    """The source at this size: OpenSlide's own level if it has one, else its level 0 averaged
    over k x k blocks (white outside the slide), the way the converter builds a missing level."""
    if (width, height) in source.level_dimensions:
        level = source.level_dimensions.index((width, height))
        rgba = np.asarray(source.read_region((0, 0), level, (width, height)))
        return np.where(rgba[..., 3:] == 0, 255, rgba[..., :3]).astype(np.uint8)
    k = round(source.dimensions[0] / width)
    rgba = np.asarray(source.read_region((0, 0), 0, (width * k, height * k))).astype(np.float64)
    rgb = np.where(rgba[..., 3:] == 0, 255.0, rgba[..., :3])
    return rgb.reshape(height, k, width, k, 3).mean(axis=(1, 3)).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --- Aperio JPEG 2000 ---------------------------------------------------------------------------


def _ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Full-range (JFIF) YCbCr, as Aperio's 33003 tiles hold it without a JPEG 2000 MCT."""
    f = rgb.astype(np.float32)
    y = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    cb = 128 - 0.168736 * f[..., 0] - 0.331264 * f[..., 1] + 0.5 * f[..., 2]
    cr = 128 + 0.5 * f[..., 0] - 0.418688 * f[..., 1] - 0.081312 * f[..., 2]
    return np.clip(np.rint(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def _j2k_tiles(image: np.ndarray, ycbcr: bool) -> Iterator[bytes]:
    height, width = image.shape[:2]
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            tile = np.full((TILE, TILE, 3), 255, np.uint8)
            part = image[y : y + TILE, x : x + TILE]
            tile[: part.shape[0], : part.shape[1]] = part
            # Aperio's encoder: irreversible 9-7 wavelet, no multiple-component transform.
            yield imagecodecs.jpeg2k_encode(
                _ycbcr(tile) if ycbcr else tile,
                level=45,
                codecformat="j2k",
                reversible=False,
                mct=False,
            )


def aperio_j2k(compression: int) -> Callable[[Path, Path], None]:
    """An Aperio SVS whose levels are JPEG 2000 tiles: 33005 holds RGB, 33003 YCbCr."""

    def make(corpus: Path, path: Path) -> None:
        base = tissue(corpus, 1500, 1100)
        levels = [base, base[::2, ::2]]
        head = "Aperio Image Library v12.0.15 \r\n1500x1100 [0,0 1500x1100] (256x256) J2K/KDU Q=70"
        props = "|AppMag = 20|MPP = 0.4990|Date = 03/12/21|Time = 10:11:12|Filename = synthetic"
        with tifffile.TiffWriter(path) as tif:
            for index, level in enumerate(levels):
                tif.write(
                    _j2k_tiles(level, ycbcr=compression == 33003),
                    shape=level.shape,
                    dtype=np.uint8,
                    tile=(TILE, TILE),
                    compression=compression,
                    photometric="rgb",
                    description=head + props if index == 0 else head,
                    metadata=None,
                )
                if index == 0:  # Aperio's second directory: the stripped thumbnail
                    tif.write(
                        base[::8, ::8],
                        compression="jpeg",
                        photometric="rgb",
                        description="Aperio Image Library v12.0.15 \r\n187x137 -> thumbnail",
                        metadata=None,
                    )
            # Label and macro: stripped, and marked reduced-resolution (+ macro) as Aperio does.
            tif.write(
                np.full((200, 300, 3), 230, np.uint8),
                compression="lzw",
                photometric="rgb",
                subfiletype=1,
                description="Aperio Image Library v12.0.15\nlabel 300x200",
                metadata=None,
            )
            tif.write(
                tissue(corpus, 800, 300),
                compression="jpeg",
                photometric="rgb",
                subfiletype=9,
                description="Aperio Image Library v12.0.15\nmacro 800x300",
                metadata=None,
            )

    return make


# --- the registry -------------------------------------------------------------------------------

# Level 3 is 320 x 224 px (OpenSlide: level 0 // 8) but its TIFF image is 768 px wide: a spare
# tile column beyond the padding, which tifffile cannot clip to 320, so that level is re-encoded.
PHILIPS = PhilipsLayout(
    spacing_mm=(0.00024, 0.00025),
    padded=[(2560, 1792), (1280, 1024), (768, 512), (768, 256)],
)
# A 2048 x 1536 px main image at 0.5 um/px, 96 x 160 um into a 1.4 x 1.12 mm collection; levels
# 4x apart; the macro covers the collection at 10 um/px.
LEICA = LeicaLayout(
    collection_nm=(1_400_000, 1_120_000),
    macro=LeicaImage("macro", (1_400_000, 1_120_000, 0, 0), [(140, 112)], 0, "0.5"),
    main=LeicaImage(
        "main",
        (1_024_000, 768_000, 96_000, 160_000),
        [(2048, 1536), (512, 384), (128, 96)],
        1,
        "20",
    ),
)


def philips_slide(corpus: Path, path: Path, layout: PhilipsLayout = PHILIPS) -> None:
    w, h = layout.padded[0]
    write_philips(path, tissue(corpus, w, h), layout)


def leica_slide(corpus: Path, path: Path, layout: LeicaLayout = LEICA) -> None:
    w, h = layout.main.sizes[0]
    main = tissue(corpus, w, h)
    write_leica(path, main, tissue_thumbnail(main, 8), layout)


SLIDES: dict[str, Callable[[Path, Path], None]] = {
    "synthetic-aperio-j2k-rgb.svs": aperio_j2k(33005),
    "synthetic-aperio-j2k-ycbcr.svs": aperio_j2k(33003),
    "synthetic-philips.tiff": philips_slide,
    "synthetic-leica.scn": leica_slide,
}


# --- reading the results -------------------------------------------------------------------------


def dicom_frames(path: Path) -> list[bytes]:
    ds = pydicom.dcmread(path)
    return list(generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames))


def unpad(frame: bytes) -> bytes:
    """A frame without the 0x00 that evens an odd-length item after the EOI."""
    return frame[:-1] if frame.endswith(EOI + b"\x00") else frame


def source_tiles(path: Path, page_index: int = 0) -> tuple[list[bytes], bytes | None]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[page_index]
        tiles = []
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            tif.filehandle.seek(offset)
            tiles.append(tif.filehandle.read(count))
        return tiles, page.jpegtables
