"""OME-TIFF pyramids (levels in SubIFDs), which OpenSlide would read as one level without pixel
size: read with tifffile, levels and PhysicalSize kept."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import tifffile
import wsidicom

from wsi import ConvertOptions, convert_slide


def _write_ome(path, image, compression: str) -> None:
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        options = {"tile": (256, 256), "photometric": "rgb", "compression": compression}
        tif.write(
            image,
            subifds=2,
            metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25},
            **options,
        )
        tif.write(image[::2, ::2], subfiletype=1, **options)
        tif.write(image[::4, ::4], subfiletype=1, **options)


@pytest.fixture
def tissue(corpus) -> np.ndarray:
    base = tifffile.imread(corpus / "wsi" / "CMU-1-Small-Region.svs", key=0)
    return np.ascontiguousarray(np.tile(base, (2, 2, 1))[:4100, :3000])


def _spacing(path) -> list[float]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return [
        float(v) for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    ]


def test_jpeg_ome_pyramid_is_copied_level_by_level(tissue, tmp_path):
    src = tmp_path / "slide.ome.tiff"
    _write_ome(src, tissue, "jpeg")
    paths = convert_slide(src, tmp_path / "out")
    # 4100 rows: three source levels, then one generated (1025 > 1024)
    assert [p.name for p in paths] == ["level0.dcm", "level1.dcm", "level2.dcm", "level3.dcm"]
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    assert [ds.ImageType[0] for ds in headers] == ["ORIGINAL"] * 3 + ["DERIVED"]
    assert [ds.TotalPixelMatrixColumns for ds in headers] == [3000, 1500, 750, 375]
    assert _spacing(paths[0]) == pytest.approx([0.00025, 0.00025])
    assert _spacing(paths[2]) == pytest.approx([0.001, 0.001])
    assert "ImageComments" not in headers[0]


def test_deflate_ome_pyramid_is_decoded_with_tifffile(tissue, tmp_path):
    src = tmp_path / "slide.ome.tiff"
    _write_ome(src, tissue, "zlib")
    options = ConvertOptions(codec="jpeg2000-lossless")
    paths = convert_slide(src, tmp_path / "out", options=options)
    with wsidicom.WsiDicom.open(paths) as dicom:
        level = dicom.levels[1]
        got = np.asarray(dicom.read_region((0, 0), level.level, (1500, 2050)).convert("RGB"))
    assert np.array_equal(got, tissue[::2, ::2])
