"""What viewers see: wsidicom reads the output and its pixels match OpenSlide's reading of the
source (identical for copied tiles, >= 40 dB PSNR where the converter re-encoded)."""

from __future__ import annotations

import numpy as np
import openslide
import pytest
import wsidicom
from vendor_fixtures import openslide_reference, psnr

MIN_PSNR_DB = 40.0


def test_levels_match_openslide(slide):
    source = openslide.OpenSlide(slide.source)
    with wsidicom.WsiDicom.open(slide.volume_paths()) as dicom:
        assert len(dicom.levels) == len(slide.plan)
        for index in {0, len(slide.plan) - 1}:
            planned = slide.plan[index]
            size = (planned.width, planned.height)
            level = dicom.levels[index]
            assert (level.size.width, level.size.height) == size
            # wsidicom names a level by its scale (log2 of the downsample), not by its position.
            got = np.asarray(dicom.read_region((0, 0), level.level, size).convert("RGB"))
            want = openslide_reference(source, *size)
            if planned.passthrough is not None:
                assert np.array_equal(got, want), f"level {index} differs from the source"
            else:
                assert psnr(got, want) >= MIN_PSNR_DB, f"level {index}: {psnr(got, want):.2f}"


def test_codecs_on_request(corpus, tmp_path):
    """Lossless codecs reproduce the decoded source exactly; forced JPEG stays >= 40 dB."""
    from wsi import ConvertOptions, convert_slide

    src = corpus / "wsi" / "CMU-1-Small-Region.svs"
    source = openslide.OpenSlide(src)
    want = openslide_reference(source, *source.dimensions)
    for codec, exact in (("jpeg2000-lossless", True), ("jpegls-lossless", True), ("jpeg", False)):
        out = tmp_path / codec
        options = ConvertOptions(codec=codec, include_label=False, include_overview=False)
        paths = convert_slide(src, out, options=options)
        with wsidicom.WsiDicom.open([p for p in paths if p.name.startswith("level")]) as dicom:
            got = np.asarray(dicom.read_region((0, 0), 0, source.dimensions).convert("RGB"))
        if exact:
            assert np.array_equal(got, want), codec
        else:
            assert psnr(got, want) >= MIN_PSNR_DB


@pytest.mark.parametrize("mode", ["rgb", "ycbcr420"])
def test_reencoded_tiles_decode_as_labelled(corpus, tmp_path, mode):
    """PhotometricInterpretation agrees with the JPEG stream for both encoder modes."""
    import pydicom

    from wsi import ConvertOptions, convert_slide

    src = corpus / "wsi" / "test3-DAPI-2.ndpi"
    # Forced re-encoding: by default the NDPI levels are re-tiled without decoding.
    options = ConvertOptions(codec="jpeg", jpeg_mode=mode, include_overview=False)
    paths = convert_slide(src, tmp_path / mode, options=options)
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    assert ds.PhotometricInterpretation == ("RGB" if mode == "rgb" else "YBR_FULL_422")
    source = openslide.OpenSlide(src)
    with wsidicom.WsiDicom.open(paths[:1]) as dicom:
        got = np.asarray(dicom.read_region((0, 0), 0, (1024, 1024)).convert("RGB"))
    want = openslide_reference(source, *source.dimensions)[:1024, :1024]
    assert psnr(got, want) >= 35.0  # a colour-model mix-up gives < 20 dB


def test_tile_size_and_associated_images_on_request(corpus, tmp_path):
    """A tile size other than the source's re-encodes level 0 on the new grid; label, overview and
    thumbnail are left out when asked."""
    import pydicom

    from wsi import ConvertOptions, convert_slide

    src = corpus / "wsi" / "CMU-1-Small-Region.svs"
    options = ConvertOptions(
        tile_size=512, include_label=False, include_overview=False, include_thumbnail=False
    )
    paths = convert_slide(src, tmp_path / "out", options=options)
    assert [p.name for p in paths] == ["level0.dcm", "level1.dcm", "level2.dcm"]
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    assert (ds.Rows, ds.Columns, ds.NumberOfFrames) == (512, 512, 5 * 6)
    assert ds.ImageType[0] == "ORIGINAL"
    source = openslide.OpenSlide(src)
    with wsidicom.WsiDicom.open(paths) as dicom:
        got = np.asarray(dicom.read_region((0, 0), 0, source.dimensions).convert("RGB"))
    assert psnr(got, openslide_reference(source, *source.dimensions)) >= MIN_PSNR_DB
