"""Forced re-encoding in the default mode: every level of every corpus slide >= 40 dB PSNR against
OpenSlide, in a Photometric Interpretation the VL Whole Slide Microscopy IOD allows. (YCbCr 4:4:4
JPEG, DICOM's YBR_FULL, would fail both: the IOD does not list it, and at quality 90 its chroma
tables give 33-36 dB on these slides.)"""

from __future__ import annotations

import numpy as np
import openslide
import pydicom
import pytest
import wsidicom
from test_wsi_pixels import MIN_PSNR_DB
from vendor_fixtures import openslide_reference, psnr
from wsi_slides import SLIDES

from wsi import ConvertOptions, convert_slide
from wsi.encode import CODECS, codec_for
from wsi.pyramid import plan
from wsi.sources import open_slide

# PS3.3 C.8.12.4, Whole Slide Microscopy Image Module: the enumerated values.
WSI_PHOTOMETRICS = {"MONOCHROME2", "RGB", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}


def test_every_codec_writes_a_photometric_the_iod_allows():
    assert {codec.photometric for codec in CODECS.values()} <= WSI_PHOTOMETRICS


@pytest.mark.parametrize("name", SLIDES)
def test_default_reencode_holds_40_db_on_every_level(corpus, tmp_path, name):
    src = corpus / "wsi" / name
    options = ConvertOptions(
        codec="jpeg", include_label=False, include_overview=False, include_thumbnail=False
    )
    paths = convert_slide(src, tmp_path / "out", options=options)
    photometric = codec_for(options.codec, options.jpeg_mode).photometric
    for path in paths:
        assert pydicom.dcmread(path, stop_before_pixels=True).PhotometricInterpretation == (
            photometric
        )
    source = openslide.OpenSlide(src)
    with wsidicom.WsiDicom.open(paths) as dicom:
        for index, planned in enumerate(plan(open_slide(src), options)):
            size = (planned.width, planned.height)
            level = dicom.levels[index]
            got = np.asarray(dicom.read_region((0, 0), level.level, size).convert("RGB"))
            value = psnr(got, openslide_reference(source, *size))
            assert value >= MIN_PSNR_DB, f"level {index}: {value:.3f} dB"
