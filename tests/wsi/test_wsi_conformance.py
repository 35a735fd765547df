"""Output instances against the VL Whole Slide Microscopy IOD: dciodvfy and the attributes the
product depends on (pyramid geometry, shared identity, optics, compression bookkeeping)."""

from __future__ import annotations

import itertools

import pydicom
import pytest
from hubtest import assert_dciodvfy_clean
from pydicom.encaps import generate_frames

VL_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


@pytest.mark.peers
def test_dciodvfy_reports_no_errors(slide):
    assert_dciodvfy_clean(slide.paths)


def test_one_study_series_and_frame_of_reference(slide):
    headers = slide.headers()
    assert {ds.SOPClassUID for ds in headers} == {VL_WSI}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({ds[keyword].value for ds in headers}) == 1, keyword
    assert len({ds.ContainerIdentifier for ds in headers}) == 1
    assert headers[0].ContainerIdentifier == slide.source.stem
    specimen = headers[0].SpecimenDescriptionSequence[0]
    assert specimen.SpecimenIdentifier == headers[0].ContainerIdentifier
    assert len({ds.SOPInstanceUID for ds in headers}) == len(headers)


def test_pyramid_geometry(slide):
    volumes = [pydicom.dcmread(p, stop_before_pixels=True) for p in slide.volume_paths()]
    assert len(volumes) == len(slide.plan)
    base = volumes[0]
    base_spacing = [float(v) for v in _spacing(base)]
    for ds, level in zip(volumes, slide.plan, strict=True):
        assert ds.DimensionOrganizationType == "TILED_FULL"
        assert ds.ImageType[2] == "VOLUME"
        assert ds.ImageType[0] == ("DERIVED" if level.generated else "ORIGINAL")
        assert ds.ImageType[3] == ("RESAMPLED" if level.generated else "NONE")
        assert (ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows) == (level.width, level.height)
        across = -(-ds.TotalPixelMatrixColumns // ds.Columns)
        down = -(-ds.TotalPixelMatrixRows // ds.Rows)
        assert ds.NumberOfFrames == across * down
        # Same physical extent at every level; spacing scales with the level's factor.
        assert float(ds.ImagedVolumeWidth) == pytest.approx(float(base.ImagedVolumeWidth))
        col_mm = base.TotalPixelMatrixColumns * base_spacing[1]
        assert float(ds.ImagedVolumeWidth) == pytest.approx(col_mm, rel=1e-4)
        factor = level.downsample
        spacing = [float(v) for v in _spacing(ds)]
        assert spacing == pytest.approx([s * factor for s in base_spacing], rel=1e-6)
    smallest = volumes[-1]
    assert max(smallest.TotalPixelMatrixColumns, smallest.TotalPixelMatrixRows) <= 1024 or (
        len(volumes) == 1
    )


def _spacing(ds):
    return ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing


def test_optical_path_carries_an_icc_profile(slide):
    for ds in slide.headers():
        path = ds.OpticalPathSequence[0]
        assert len(path.ICCProfile) > 128
        assert path.ICCProfile[36:40] == b"acsp"  # ICC signature
        shared = ds.SharedFunctionalGroupsSequence[0]
        assert shared.OpticalPathIdentificationSequence[0].OpticalPathIdentifier == (
            path.OpticalPathIdentifier
        )


def test_compression_ratio_matches_the_stored_frames(slide):
    for path in slide.paths:
        ds = pydicom.dcmread(path)
        frames = list(generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames))
        assert len(frames) == ds.NumberOfFrames
        if ds.LossyImageCompression != "01":
            continue
        raw = ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.NumberOfFrames
        stored = sum(len(f) + (len(f) & 1) for f in frames)
        ratios = _values(ds.LossyImageCompressionRatio)
        assert float(ratios[-1]) == pytest.approx(raw / stored, rel=1e-3), path.name
        assert len(_values(ds.LossyImageCompressionMethod)) == len(ratios)


def _values(value) -> list:
    return list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]


def test_scanner_facts_are_kept(wsi_converted):
    cmu = wsi_converted["CMU-1-Small-Region.svs"].headers()[0]
    assert cmu.AcquisitionDateTime == "20091229095915"  # aperio.Date 12/29/09, Time 09:59:15
    assert cmu.Manufacturer == "Aperio"
    assert cmu.DeviceSerialNumber == "CPAPERIOCS"
    assert float(_spacing(cmu)[0]) == pytest.approx(0.000499)  # MPP 0.4990 um
    assert "ImageComments" not in cmu
    ndpi = wsi_converted["test3-DAPI-2.ndpi"].headers()[0]
    assert ndpi.AcquisitionDateTime == "20170207130643"  # tiff.DateTime
    assert ndpi.Manufacturer == "Hamamatsu"
    assert float(_spacing(ndpi)[0]) == pytest.approx(0.2281750559 / 1000)


def test_label_overview_and_thumbnail(wsi_converted):
    headers = {
        p.name: pydicom.dcmread(p, stop_before_pixels=True)
        for p in wsi_converted["CMU-1-Small-Region.svs"].paths
    }
    assert headers["label.dcm"].ImageType[2] == "LABEL"
    assert headers["label.dcm"].SpecimenLabelInImage == "YES"
    assert headers["overview.dcm"].ImageType[2] == "OVERVIEW"
    assert headers["thumbnail.dcm"].ImageType[2] == "THUMBNAIL"
    assert headers["level0.dcm"].BurnedInAnnotation == "NO"


def test_the_image_lies_on_the_slide(slide):
    """Slide coordinates of every level's corner pixels are positive (the image is on the glass,
    not beside it), and every level starts at the same place."""
    import highdicom as hd
    import numpy as np

    corners, pixel_mm = [], 0.0
    for path in slide.volume_paths():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        pixel_mm = max(pixel_mm, *(float(v) for v in _spacing(ds)))
        to_slide = hd.spatial.ImageToReferenceTransformer.for_image(ds, for_total_pixel_matrix=True)
        edge = np.array([[0.0, 0.0], [ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows]])
        mm = to_slide(edge - 0.5)[:, :2]  # pixel edges, not centres
        assert (mm > -1e-6).all(), (path.name, mm)
        corners.append(mm)
    for mm in corners[1:]:  # the same origin, to within a pixel of the coarsest level
        assert mm[0] == pytest.approx(corners[0][0], abs=pixel_mm)


def test_thumbnail_is_well_below_every_level(slide):
    """dicom-microscopy-viewer puts VOLUME and THUMBNAIL images into one pyramid and refuses
    near-equal resolutions: a thumbnail is at most half the smallest level, or absent."""
    headers = slide.headers()
    levels = [ds for ds in headers if ds.ImageType[2] == "VOLUME"]
    smallest = min(levels, key=lambda ds: ds.TotalPixelMatrixColumns)
    for ds in headers:
        if ds.ImageType[2] != "THUMBNAIL":
            continue
        assert 2 * ds.TotalPixelMatrixColumns <= smallest.TotalPixelMatrixColumns
        assert 2 * ds.TotalPixelMatrixRows <= smallest.TotalPixelMatrixRows
    # The viewer's own check: every resolution strictly below the one before.
    pyramid = sorted(
        (ds for ds in headers if ds.ImageType[2] in ("VOLUME", "THUMBNAIL")),
        key=lambda ds: -ds.TotalPixelMatrixColumns,
    )
    widths = [ds.TotalPixelMatrixColumns for ds in pyramid]
    assert all(a >= 1.5 * b for a, b in itertools.pairwise(widths)), widths


def test_the_thumbnail_is_kept_where_it_fits(wsi_converted):
    kinds = {
        name: [ds.ImageType[2] for ds in converted.headers()]
        for name, converted in wsi_converted.items()
        if name in ("CMU-1-Small-Region.svs", "small.svs")
    }
    assert "THUMBNAIL" in kinds["CMU-1-Small-Region.svs"]  # scaled below its 555 px level
    assert "THUMBNAIL" not in kinds["small.svs"]  # a 16 px slide has no room below it


def test_instance_numbers_put_label_and_overview_last(slide):
    """The pyramid largest first, then the thumbnail, then the label and the overview: viewers
    that show a series by its middle instance show the slide, not its label."""
    order = {"VOLUME": 0, "THUMBNAIL": 1, "LABEL": 2, "OVERVIEW": 3}
    headers = sorted(slide.headers(), key=lambda ds: ds.InstanceNumber)
    assert [ds.InstanceNumber for ds in headers] == list(range(1, len(headers) + 1))
    kinds = [order[ds.ImageType[2]] for ds in headers]
    assert kinds == sorted(kinds)
    volumes = [ds.TotalPixelMatrixColumns for ds in headers if ds.ImageType[2] == "VOLUME"]
    assert volumes == sorted(volumes, reverse=True)
    pictures = sum(1 for kind in kinds if kind < order["LABEL"])
    if pictures > len(headers) - pictures:  # then either middle instance is a picture
        for middle in (len(headers) // 2, (len(headers) - 1) // 2):
            assert headers[middle].ImageType[2] in ("VOLUME", "THUMBNAIL")
