"""Philips TIFF and Leica SCN, written here as small synthetic slides that OpenSlide detects as
those vendors (no sample files exist), through the gates the corpus slides pass: dciodvfy, wsidicom
pixels against OpenSlide, copied tiles equal to the source, pixel spacing and level sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pydicom
import pytest
import tifffile
import wsidicom
from vendor_fixtures import (
    LEICA,
    PHILIPS,
    LeicaImage,
    LeicaLayout,
    dicom_frames,
    leica_slide,
    openslide_reference,
    philips_slide,
    psnr,
    source_tiles,
    unpad,
)
from wsi_slides import Converted

from wsi import convert_slide
from wsi.codestream import SOI, tables_segments
from wsi.sources import open_slide

MIN_PSNR_DB = 40.0
VENDORS = {"philips": "synthetic-philips.tiff", "leica": "synthetic-leica.scn"}


@pytest.fixture
def philips(wsi_converted) -> Converted:
    return wsi_converted[VENDORS["philips"]]


@pytest.fixture
def leica(wsi_converted) -> Converted:
    return wsi_converted[VENDORS["leica"]]


@pytest.fixture(params=list(VENDORS.values()))
def vendor_slide(request, wsi_converted) -> Converted:
    return wsi_converted[request.param]


def _spacing(ds: pydicom.Dataset) -> list[float]:
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    return [float(v) for v in measures.PixelSpacing]


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_openslide_and_tifffile_detect_the_vendor(vendor, wsi_converted):
    source = wsi_converted[VENDORS[vendor]].source
    slide = openslide.OpenSlide(source)
    assert slide.properties["openslide.vendor"] == vendor
    assert slide.level_count >= 3
    with tifffile.TiffFile(source) as tif:
        # tifffile's vendor series are what the converter finds copyable tiles in.
        assert tif.is_philips if vendor == "philips" else tif.is_scn


def test_level_sizes_equal_openslide(vendor_slide):
    slide = openslide.OpenSlide(vendor_slide.source)
    headers = [vendor_slide.header(p.name) for p in vendor_slide.volume_paths()]
    sizes = [(ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows) for ds in headers]
    assert sizes[: slide.level_count] == list(slide.level_dimensions)
    assert all(level.generated for level in vendor_slide.plan[slide.level_count :])


def test_pixel_spacing_follows_openslide_mpp(vendor_slide):
    slide = openslide.OpenSlide(vendor_slide.source)
    mpp_x = float(slide.properties["openslide.mpp-x"])
    mpp_y = float(slide.properties["openslide.mpp-y"])
    for path, level in zip(vendor_slide.volume_paths(), vendor_slide.plan, strict=True):
        spacing = _spacing(vendor_slide.header(path.name))
        # DICOM PixelSpacing is (row, column) in mm; OpenSlide's mpp is micrometres.
        want = [mpp_y / 1000 * level.downsample, mpp_x / 1000 * level.downsample]
        assert spacing == pytest.approx(want, rel=1e-6), path.name


def test_philips_spacing_is_the_xml_millimetres(philips):
    """The 1000x trap: DICOM_PIXEL_SPACING is already mm ("row col"), OpenSlide's mpp is um."""
    x_mm, y_mm = PHILIPS.spacing_mm
    assert _spacing(philips.header("level0.dcm")) == pytest.approx([y_mm, x_mm], rel=1e-6)
    assert _spacing(philips.header("level2.dcm")) == pytest.approx([4 * y_mm, 4 * x_mm], rel=1e-6)


def test_leica_spacing_is_the_main_image_resolution(leica):
    mm = LEICA.main_mpp / 1000
    assert _spacing(leica.header("level0.dcm")) == pytest.approx([mm, mm], rel=1e-6)
    assert _spacing(leica.header("level1.dcm")) == pytest.approx([4 * mm, 4 * mm], rel=1e-6)


@pytest.mark.parametrize(
    ("vendor", "copied"),
    [
        ("philips", [True, True, True, False]),
        # OpenSlide's Leica levels span the whole collection, not the main image's TIFF: decoded.
        ("leica", [False, False, False]),
    ],
)
def test_which_levels_are_copied(request, vendor, copied):
    converted = request.getfixturevalue(vendor)
    assert [level.passthrough is not None for level in converted.plan] == copied


def test_philips_copied_frames_are_the_source_tiles(philips):
    """YCbCr tiles with shared JPEGTables: each frame is SOI + tables + the tile after its SOI."""
    copied = [i for i, level in enumerate(philips.plan) if level.passthrough is not None]
    assert copied
    for index in copied:
        tiles, tables = source_tiles(philips.source, index)
        copied_frames = dicom_frames(philips.volume_paths()[index])
        assert len(copied_frames) == len(tiles) == philips.plan[index].frames
        prefix = SOI + tables_segments(tables)
        for tile, frame in zip(tiles, copied_frames, strict=True):
            assert b"\xff\xdb" not in tile and b"\xff\xc4" not in tile  # tables only in the tag
            assert unpad(frame) == prefix + tile[2:]
        ds = philips.header(f"level{index}.dcm")
        assert ds.PhotometricInterpretation == "YBR_FULL_422"
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"


def test_philips_scanner_facts(philips):
    ds = philips.header("level0.dcm")
    assert ds.AcquisitionDateTime == PHILIPS.acquired[:14]
    assert ds.Manufacturer == "PHILIPS"
    assert "ImageComments" not in ds  # the spacing was recorded, not assumed
    names = {p.name for p in philips.paths}
    assert {"label.dcm", "overview.dcm"} <= names
    assert philips.header("label.dcm").ImageType[2] == "LABEL"
    assert philips.header("overview.dcm").ImageType[2] == "OVERVIEW"


def test_leica_scanner_facts(leica):
    ds = leica.header("level0.dcm")
    assert ds.Manufacturer == "Leica"
    assert ds.ManufacturerModelName == "Leica SCN400;Leica SCN"
    assert "ImageComments" not in ds
    assert "overview.dcm" in {p.name for p in leica.paths}  # the macro image


def test_leica_acquisition_datetime_is_the_creation_date(leica):
    assert leica.header("level0.dcm").AcquisitionDateTime == "20130521095451"


def _drop_tile(path: Path, page_index: int, tile: int) -> None:
    """Zero a tile's offset and byte count, as Philips does for tiles outside its scanned areas."""
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[page_index].tags
        spots = []
        for name in ("TileOffsets", "TileByteCounts"):
            tag = tags[name]
            width = {3: 2, 4: 4, 16: 8}[int(tag.dtype)]  # SHORT, LONG, LONG8
            spots.append((tag.valueoffset + width * tile, width))
    with open(path, "r+b") as fh:
        for at, width in spots:
            fh.seek(at)
            fh.write(bytes(width))


def test_philips_sparse_tiles_are_white_and_the_rest_copied(corpus, tmp_path):
    src = tmp_path / "philips.tiff"
    philips_slide(corpus, src)
    _drop_tile(src, 0, 3)
    slide = openslide.OpenSlide(src)
    assert slide.properties["openslide.vendor"] == "philips"
    assert open_slide(src).levels[0].passthrough is not None
    paths = convert_slide(src, tmp_path / "out")
    tiles, tables = source_tiles(src, 0)
    assert len(tiles[3]) == 0
    level0 = dicom_frames(paths[0])
    prefix = SOI + tables_segments(tables)
    assert len(level0) == len(tiles)
    for index, (tile, frame) in enumerate(zip(tiles, level0, strict=True)):
        if index != 3:
            assert unpad(frame) == prefix + tile[2:], f"tile {index}"
    with wsidicom.WsiDicom.open(paths[:1]) as dicom:
        got = np.asarray(dicom.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    assert got[:256, 3 * 256 : 4 * 256].min() == 255  # OpenSlide leaves it transparent
    assert np.array_equal(got, openslide_reference(slide, *slide.level_dimensions[0]))


def test_leica_macro_of_a_level_size_is_not_taken_for_that_level(corpus, tmp_path):
    # The macro at 8 um/px is 175 x 140 px, the size of OpenSlide's level 2 (the collection at
    # 8 um/px, with the main image in it).
    macro = LeicaImage("macro", (*LEICA.collection_nm, 0, 0), [(175, 140)], 0, "0.5")
    layout = LeicaLayout(LEICA.collection_nm, macro, LEICA.main)
    src = tmp_path / "leica.scn"
    leica_slide(corpus, src, layout)
    slide = openslide.OpenSlide(src)
    assert slide.level_dimensions[2] == (175, 140)
    assert open_slide(src).levels[2].passthrough is None
    paths = convert_slide(src, tmp_path / "out")
    with wsidicom.WsiDicom.open([p for p in paths if p.name.startswith("level")]) as dicom:
        level = dicom.levels[2]
        got = np.asarray(dicom.read_region((0, 0), level.level, (175, 140)).convert("RGB"))
    assert psnr(got, openslide_reference(slide, *slide.level_dimensions[2])) >= MIN_PSNR_DB
