"""Copied tiles: byte-identical to the source apart from merged tables (and the APP14 marker that
states RGB), labelled with the right colour model, for Aperio and generic JPEG / JPEG 2000 TIFF."""

from __future__ import annotations

import imagecodecs
import numpy as np
import openslide
import pydicom
import pytest
import tifffile
from vendor_fixtures import dicom_frames, source_tiles, tissue, unpad

from wsi import ConversionError, ConvertOptions, convert_slide
from wsi.codestream import (
    ADOBE_APP14_RGB,
    SOI,
    JpegTileCheck,
    read_jpeg_header,
    tables_segments,
)


def test_aperio_tiles_are_copied_with_tables_and_app14(wsi_converted):
    converted = wsi_converted["CMU-1-Small-Region.svs"]
    assert converted.plan[0].passthrough is not None
    tiles, tables = source_tiles(converted.source)
    frames = dicom_frames(converted.paths[0])
    assert len(frames) == len(tiles)
    # Aperio's RGB-coded tiles: component ids 0,1,2, no APP14: the frame must say RGB.
    assert read_jpeg_header(tiles[0]).component_ids == (0, 1, 2)
    prefix = SOI + ADOBE_APP14_RGB + tables_segments(tables)
    for tile, frame in zip(tiles, frames, strict=True):
        assert unpad(frame) == prefix + tile[2:]
    ds = pydicom.dcmread(converted.paths[0], stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "RGB"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"


def test_copied_frames_decode_like_openslide(wsi_converted):
    converted = wsi_converted["CMU-1-Small-Region.svs"]
    frames = dicom_frames(converted.paths[0])
    slide = openslide.OpenSlide(converted.source)
    tile = converted.plan[0].tile_width
    for index in (0, 5, len(frames) - 1):
        across = converted.plan[0].tiles_across
        ty, tx = divmod(index, across)
        got = imagecodecs.jpeg8_decode(frames[index])
        region = np.asarray(slide.read_region((tx * tile, ty * tile), 0, (tile, tile)))
        visible = region[..., 3] > 0
        assert np.array_equal(got[visible], region[..., :3][visible])


def test_generic_ycbcr_jpeg_tiff(corpus, tmp_path):
    """A generic tiled TIFF with ordinary YCbCr JPEG tiles: copied, labelled YBR_FULL_422."""
    src = tmp_path / "generic.tiff"
    pixels = tissue(corpus, 1500, 1100)
    tifffile.imwrite(
        src,
        pixels,
        tile=(256, 256),
        photometric="ycbcr",
        compression="jpeg",
        compressionargs={"level": 85},
        resolution=(1e4 / 0.25, 1e4 / 0.25),
        resolutionunit="CENTIMETER",
    )
    paths = convert_slide(src, tmp_path / "out")
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == pytest.approx([0.00025, 0.00025])
    tiles, tables = source_tiles(src)
    frames = dicom_frames(paths[0])
    for tile, frame in zip(tiles, frames, strict=True):
        assert unpad(frame) == SOI + tables_segments(tables) + tile[2:]
    slide = openslide.OpenSlide(src)
    want = np.asarray(slide.read_region((0, 0), 0, (256, 256)))[..., :3]
    assert np.array_equal(imagecodecs.jpeg8_decode(frames[0]), want)


def _lossless_j2k_tiff(path, pixels: np.ndarray) -> None:
    """A tiled TIFF of reversible (5-3, lossless) JPEG 2000 tiles with the colour transform on."""
    tifffile.imwrite(
        path,
        pixels,
        tile=(256, 256),
        photometric="rgb",
        compression="jpeg2000",
        compressionargs={"level": 0, "codecformat": "j2k"},
    )


def test_jpeg2000_tiles_are_copied_with_their_colour_transform(corpus, tmp_path):
    src = tmp_path / "j2k.tiff"
    pixels = tissue(corpus, 700, 600)
    _lossless_j2k_tiff(src, pixels)
    paths = convert_slide(src, tmp_path / "out", options=ConvertOptions(include_label=False))
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.91"
    assert ds.PhotometricInterpretation in ("YBR_RCT", "YBR_ICT", "RGB")
    tiles, _ = source_tiles(src)
    frames = dicom_frames(paths[0])
    assert [unpad(f) for f in frames] == [t for t in tiles]
    decoded = imagecodecs.jpeg2k_decode(frames[0])
    assert np.array_equal(decoded, pixels[:256, :256])


def test_zero_length_tile_is_mended_and_the_rest_copied(corpus, tmp_path):
    """A tile with byte count 0 (Philips leaves empty areas so) becomes a white tile in the level's
    colour model; its neighbours are still copied byte for byte."""
    src = tmp_path / "sparse.tiff"
    tifffile.imwrite(
        src,
        tissue(corpus, 900, 700),
        tile=(256, 256),
        photometric="rgb",
        compression="jpeg",
        resolution=(4e4, 4e4),
        resolutionunit="CENTIMETER",
    )
    with tifffile.TiffFile(src) as tif:
        tag = tif.pages[0].tags["TileByteCounts"]
        width = {3: 2, 4: 4, 16: 8}[int(tag.dtype)]  # SHORT, LONG, LONG8
        at = tag.valueoffset + width * (tag.count - 1)
    with open(src, "r+b") as fh:
        fh.seek(at)
        fh.write(bytes(width))
    tiles, tables = source_tiles(src)
    assert len(tiles[-1]) == 0
    paths = convert_slide(src, tmp_path / "out")
    frames = dicom_frames(paths[0])
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    header = read_jpeg_header(tiles[0])
    rgb = ds.PhotometricInterpretation == "RGB"
    prefix = SOI + (ADOBE_APP14_RGB if rgb and header.adobe_transform is None else b"")
    for tile, frame in zip(tiles[:-1], frames[:-1], strict=True):
        assert unpad(frame) == prefix + tables_segments(tables) + tile[2:]
    mended = imagecodecs.jpeg8_decode(frames[-1])
    assert mended.shape == (256, 256, 3)
    assert mended.min() >= 250  # white, whatever the colour model
    assert read_jpeg_header(frames[-1]).adobe_transform == (0 if rgb else None)


def test_source_icc_profile_is_carried_over(corpus, tmp_path):
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = bytes([7, 234, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6])  # its own creation date
    src = tmp_path / "icc.tiff"
    tifffile.imwrite(
        src,
        tissue(corpus, 600, 500),
        tile=(256, 256),
        photometric="rgb",
        compression="jpeg",
        extratags=[(34675, 7, len(profile), bytes(profile), True)],
    )
    paths = convert_slide(src, tmp_path / "out")
    for path in paths:
        optical = pydicom.dcmread(path, stop_before_pixels=True).OpticalPathSequence[0]
        assert optical.ICCProfile == bytes(profile)
        assert "ColorSpace" not in optical


def test_tile_check_rejects_broken_streams(corpus):
    good, _ = source_tiles(corpus / "wsi" / "small.svs")
    bad, _ = source_tiles(corpus / "bad" / "unreadable.svs")  # SOS marker overwritten
    check = JpegTileCheck()
    assert check(good[0]) and check(memoryview(good[0]))
    assert not check(bad[0])
    assert not check(good[0][:-2])  # no EOI: truncated
    assert not check(b"")
    assert not JpegTileCheck()(bad[0])  # also as the first tile seen


def test_corrupt_tile_in_a_copied_level_fails_clearly(corpus, tmp_path):
    """A broken tile amid good ones: the converter tries to decode it instead, and when the slide
    reader cannot either, it stops with the tile named and leaves nothing behind."""
    src = tmp_path / "corrupt.tiff"
    tifffile.imwrite(
        src, tissue(corpus, 900, 700), tile=(256, 256), photometric="rgb", compression="jpeg"
    )
    with tifffile.TiffFile(src) as tif:
        page = tif.pages[0]
        tile_at, count = page.dataoffsets[5], page.databytecounts[5]
        tif.filehandle.seek(tile_at)
        tile = tif.filehandle.read(count)
    sos = tile.index(b"\xff\xda")
    with open(src, "r+b") as fh:
        fh.seek(tile_at + sos + 1)
        fh.write(b"\xdb")  # what unreadable.svs has: the scan marker turned into a table marker
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match="tile 5 of the 900x700 level"):
        convert_slide(src, out, options=ConvertOptions(workers=1))
    assert sorted(tmp_path.iterdir()) == [src]


def test_aperio_rgb_jpeg2000_tiles_are_copied_as_rgb(wsi_converted):
    """Aperio 33005: RGB components without a colour transform, so the label is RGB."""
    converted = wsi_converted["synthetic-aperio-j2k-rgb.svs"]
    for index, path in enumerate(converted.volume_paths()):
        assert converted.plan[index].passthrough is not None
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.91"
        assert ds.PhotometricInterpretation == "RGB"
        assert ds.LossyImageCompression == "01"
        tiles, _ = source_tiles(converted.source, page_index=2 * index)  # page 1: thumbnail
        assert [unpad(f) for f in dicom_frames(path)] == tiles


def test_aperio_ycbcr_jpeg2000_tiles_are_reencoded(wsi_converted):
    """Aperio 33003 holds YCbCr although the TIFF says RGB; no DICOM label fits, so the pixels
    are decoded (OpenSlide converts them to RGB) and re-encoded, with both compressions listed."""
    converted = wsi_converted["synthetic-aperio-j2k-ycbcr.svs"]
    assert all(level.passthrough is None for level in converted.plan)
    ds = pydicom.dcmread(converted.paths[0], stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert list(ds.LossyImageCompressionMethod) == ["ISO_15444_1", "ISO_10918_1"]


def test_lossless_jpeg2000_source_reencoded_losslessly_stays_lossless(corpus, tmp_path):
    """A reversible JPEG 2000 source re-encoded as lossless JPEG 2000 has never been through a
    lossy step: LossyImageCompression 00, no method listed."""
    src = tmp_path / "j2k.tiff"
    _lossless_j2k_tiff(src, tissue(corpus, 700, 600))
    options = ConvertOptions(codec="jpeg2000-lossless", include_label=False)
    paths = convert_slide(src, tmp_path / "out", options=options)
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    assert ds.LossyImageCompression == "00"
    assert "LossyImageCompressionMethod" not in ds
