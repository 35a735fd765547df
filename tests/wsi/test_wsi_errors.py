"""Bad input: a clear ConversionError and nothing left behind, in the output folder or beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile

from wsi import ConversionError, ConvertOptions, convert_slide

BAD = {
    "unreadable.svs": "cannot decode",  # opens, but its tile data is corrupt
    "unopenable.tiff": "unsupported",
    "small_dicom_nonconformant.dcm": "not a whole-slide image",
}


def _leftovers(parent: Path) -> list[Path]:
    return sorted(parent.rglob("*"))


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_gives_a_clear_error_and_no_output(corpus, tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as caught:
        convert_slide(corpus / "bad" / name, out)
    message = str(caught.value)
    assert name in message
    assert BAD[name] in message.lower()
    assert _leftovers(tmp_path) == []


def test_failure_keeps_an_existing_output_folder_as_it_was(corpus, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError):
        convert_slide(corpus / "bad" / "unreadable.svs", out)
    assert _leftovers(tmp_path) == [out, out / "keep.txt"]


def test_missing_file(tmp_path):
    with pytest.raises(ConversionError, match="no such file"):
        convert_slide(tmp_path / "nope.svs", tmp_path / "out")
    assert _leftovers(tmp_path) == []


def test_existing_output_is_not_overwritten(corpus, tmp_path):
    out = tmp_path / "out"
    convert_slide(corpus / "wsi" / "small.svs", out)
    before = {p: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConversionError, match="not overwriting"):
        convert_slide(corpus / "wsi" / "small.svs", out)
    assert {p: p.read_bytes() for p in out.iterdir()} == before


def test_bad_options_are_refused():
    with pytest.raises(ConversionError, match="codec"):
        ConvertOptions(codec="webp")
    with pytest.raises(ConversionError, match="quality"):
        ConvertOptions(jpeg_quality=0)


def _spacing_mm(path: Path) -> list[float]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    return [float(v) for v in spacing], ds


def test_slide_without_pixel_spacing_uses_the_stated_fallback(tmp_path):
    """No resolution tags at all: converts, assumes fallback_mpp, and says so in the file."""
    src = tmp_path / "nompp.tiff"
    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (600, 500, 3), dtype=np.uint8)
    tifffile.imwrite(src, image, tile=(256, 256), photometric="rgb", compression="zlib")
    paths = convert_slide(src, tmp_path / "out", options=ConvertOptions(fallback_mpp=0.5))
    spacing, ds = _spacing_mm(paths[0])
    assert spacing == pytest.approx([0.0005, 0.0005])
    assert "not recorded" in ds.ImageComments and "0.5 um" in ds.ImageComments
    assert float(ds.ImagedVolumeWidth) == pytest.approx(500 * 0.0005)


def test_72_dpi_placeholder_counts_as_no_spacing(wsi_converted):
    """small_HE_levels.tiff says 28.34 px/cm (72 dpi), a writer default, not a microscope's."""
    spacing, ds = _spacing_mm(wsi_converted["small_HE_levels.tiff"].paths[0])
    assert spacing == pytest.approx([0.001, 0.001])  # ConvertOptions.fallback_mpp = 1.0 um
    assert "assumed 1 um/pixel" in ds.ImageComments


def test_unwritable_destination(corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConversionError, match="small.svs"):
        convert_slide(corpus / "wsi" / "small.svs", blocker / "out")
    assert _leftovers(tmp_path) == [blocker]
