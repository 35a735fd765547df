"""Fluorescence and multiplex sources (OME-TIFF with C, Z and T; QPTIFF): one MONOCHROME2 optical
path per channel, lossless, pixels identical per channel, optics and spacing from the source."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
import wsidicom
from fluorescence_fixtures import FLUOROPHORES, Fluorescence, corrupt_tile, write_ome, write_qptiff
from hubtest import assert_dciodvfy_clean

from wsi import ConversionError, ConvertOptions, convert_slide

J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"

FIXTURES = {
    "ome-3ch-8bit": lambda p: write_ome(p, channels=3, dtype=np.uint8, physical_size=0.5),
    "ome-5ch-16bit": lambda p: write_ome(p, channels=5, dtype=np.uint16, physical_size=0.25),
    "ome-3ch-16bit-no-size": lambda p: write_ome(
        p, channels=3, dtype=np.uint16, physical_size=None
    ),
    "ome-5ch-8bit-no-size": lambda p: write_ome(p, channels=5, dtype=np.uint8, physical_size=None),
    "qptiff-3ch": lambda p: write_qptiff(p, channels=3),
    # Named by its description XML alone (another Software tag than tifffile looks for).
    "qptiff-5ch-other-software": lambda p: write_qptiff(p, channels=5, software="Vectra 3.0"),
}


@dataclass
class Converted:
    source: Fluorescence
    paths: list[Path]
    warnings: list[str]

    def instance(self, level: int, channel: int) -> Path:
        return next(p for p in self.paths if p.name == f"level{level}-c{channel}.dcm")


@pytest.fixture(scope="session")
def fluorescence(tmp_path_factory) -> dict[str, Converted]:
    out = {}
    for name, write in FIXTURES.items():
        folder = tmp_path_factory.mktemp(name)
        source = write(folder / f"{name}.tif")
        warnings: list[str] = []
        paths = convert_slide(source.path, folder / "out", warn=warnings.append)
        out[name] = Converted(source, paths, warnings)
    return out


@pytest.fixture(params=sorted(FIXTURES))
def converted(request, fluorescence) -> Converted:
    return fluorescence[request.param]


def _channel_pixels(paths: list[Path], level: int, channel: int) -> np.ndarray:
    with wsidicom.WsiDicom.open(paths) as slide:
        size = slide.levels[level].size
        region = slide.read_region((0, 0), level, (size.width, size.height), path=str(channel))
    return np.asarray(region)


def test_every_channel_of_every_level_reads_back_identical(converted):
    source = converted.source
    pyramid = [p for p in converted.paths if p.name.startswith("level")]
    assert len(pyramid) == len(source.planes) * len(source.names)
    for level, planes in enumerate(source.planes):
        for channel, expected in enumerate(planes):
            got = _channel_pixels(converted.paths, level, channel)
            assert got.shape == expected.shape
            assert np.array_equal(got.astype(expected.dtype), expected), (level, channel)


@pytest.mark.peers
def test_dciodvfy_reports_no_errors(converted):
    assert_dciodvfy_clean(converted.paths)


def test_one_optical_path_per_channel_with_the_source_optics(converted):
    source = converted.source
    bits = source.planes[0][0].dtype.itemsize * 8
    for channel, (name, excitation, emission, _) in enumerate(FLUOROPHORES[: len(source.names)]):
        ds = pydicom.dcmread(converted.instance(0, channel), stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID == JPEG_LS_LOSSLESS
        assert (ds.PhotometricInterpretation, ds.SamplesPerPixel) == ("MONOCHROME2", 1)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (bits, bits, bits - 1)
        assert ds.LossyImageCompression == "00"
        assert ds.NumberOfOpticalPaths == 1
        (path,) = ds.OpticalPathSequence
        assert path.OpticalPathIdentifier == str(channel)
        assert path.OpticalPathDescription == name
        assert path.IlluminationTypeCodeSequence[0].CodeValue == "111743"  # epifluorescence
        assert float(path.IlluminationWaveLength) == excitation
        assert int(path.ImagePathFilterPassThroughWavelength) == emission
        assert "ICCProfile" not in path
        shared = ds.SharedFunctionalGroupsSequence[0]
        assert shared.OpticalPathIdentificationSequence[0].OpticalPathIdentifier == str(channel)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in converted.paths]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({ds[keyword].value for ds in headers}) == 1


def test_a_qptiff_keeps_its_label_and_overview_as_colour_photographs(fluorescence):
    for name in ("qptiff-3ch", "qptiff-5ch-other-software"):
        converted = fluorescence[name]
        channels = len(converted.source.names)
        by_name = {p.name: p for p in converted.paths}
        assert {"label.dcm", "overview.dcm"} <= set(by_name) and "thumbnail.dcm" not in by_name
        series = pydicom.dcmread(by_name["level0-c0.dcm"], stop_before_pixels=True)
        for kind, width in (("LABEL", 100), ("OVERVIEW", 300)):
            ds = pydicom.dcmread(by_name[f"{kind.lower()}.dcm"])
            assert ds.ImageType[2] == kind and ds.SeriesInstanceUID == series.SeriesInstanceUID
            assert (ds.SamplesPerPixel, ds.BitsStored) == (3, 8)
            assert (ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows) == (width, 120)
            (path,) = ds.OpticalPathSequence
            assert path.OpticalPathIdentifier == str(channels)  # not one of the channels'
            assert path.IlluminationTypeCodeSequence[0].CodeValue == "111744"  # brightfield
            assert "PresentationLUTShape" not in ds
            pixels = ds.pixel_array.astype(int)
            assert pixels.shape == (120, width, 3)
            assert abs(pixels.mean() - 200) < 2  # the fixture's grey glass, through JPEG


def _spacing_um(path: Path) -> list[float]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    return [float(v) * 1000 for v in measures.PixelSpacing]


def test_pixel_spacing_from_the_source_or_the_stated_fallback(converted):
    ds = pydicom.dcmread(converted.instance(0, 0), stop_before_pixels=True)
    mpp = converted.source.mpp
    if mpp is None:
        assert _spacing_um(converted.instance(0, 0)) == pytest.approx([1.0, 1.0])
        note = "Pixel spacing not recorded by the scanner; assumed 1 um/pixel"
        assert note in ds.ImageComments
        assert note in converted.warnings
    else:
        assert _spacing_um(converted.instance(0, 0)) == pytest.approx([mpp, mpp], rel=1e-6)
        assert _spacing_um(converted.instance(1, 0)) == pytest.approx([2 * mpp, 2 * mpp], rel=1e-6)
        assert "ImageComments" not in ds
        assert converted.warnings == []


def _halved(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape[0] // 2, plane.shape[1] // 2
    blocks = plane.astype(np.float64).reshape(h, 2, w, 2)
    return np.rint(blocks.mean(axis=(1, 3))).astype(plane.dtype)


def test_generated_levels_are_box_means_each_of_the_level_before(tmp_path):
    source = write_ome(
        tmp_path / "one.ome.tif", channels=3, dtype=np.uint16, size=(2200, 1700), levels=1
    )
    paths = convert_slide(source.path, tmp_path / "out")
    assert sorted(p.name for p in paths) == sorted(
        f"level{lv}-c{c}.dcm" for lv in range(3) for c in range(3)
    )
    ds = pydicom.dcmread(tmp_path / "out" / "level1-c2.dcm", stop_before_pixels=True)
    assert (ds.ImageType[0], ds.ImageType[3]) == ("DERIVED", "RESAMPLED")
    for channel in range(3):
        level1 = _halved(source.planes[0][channel])
        assert np.array_equal(_channel_pixels(paths, 1, channel), level1)
        assert np.array_equal(_channel_pixels(paths, 2, channel), _halved(level1))


def test_z_plane_and_time_point_are_chosen(tmp_path):
    source = write_ome(tmp_path / "zt.ome.tif", channels=3, dtype=np.uint16, z=3, t=2, levels=2)
    stack = tifffile.imread(source.path)  # T, C, Z, Y, X
    warnings: list[str] = []
    options = ConvertOptions(z=2, t=1)
    paths = convert_slide(source.path, tmp_path / "out", options=options, warn=warnings.append)
    for channel in range(3):
        assert np.array_equal(_channel_pixels(paths, 0, channel), stack[1, channel, 2])
    assert not np.array_equal(stack[1, 0, 2], stack[0, 0, 0])
    assert "Z plane 3 of 3 and time point 2 of 2 of the source" in warnings
    with pytest.raises(ConversionError, match="no Z plane 3; the slide has 3"):
        convert_slide(source.path, tmp_path / "out2", options=ConvertOptions(z=3))
    with pytest.raises(ConversionError, match="no time point 5; the slide has 2"):
        convert_slide(source.path, tmp_path / "out3", options=ConvertOptions(t=5))


def test_jpeg_2000_is_the_other_lossless_choice(tmp_path):
    source = write_ome(tmp_path / "j2k.ome.tif", channels=3, dtype=np.uint16, levels=2)
    paths = convert_slide(
        source.path, tmp_path / "out", options=ConvertOptions(codec="jpeg2000-lossless")
    )
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == J2K_LOSSLESS
    for channel in range(3):
        assert np.array_equal(_channel_pixels(paths, 0, channel), source.planes[0][channel])


def test_jpeg_is_refused_for_16_bit_channels(tmp_path):
    source = write_ome(tmp_path / "j.ome.tif", channels=3, dtype=np.uint16, levels=1)
    with pytest.raises(ConversionError, match="JPEG baseline holds 8 bits"):
        convert_slide(source.path, tmp_path / "out", options=ConvertOptions(codec="jpeg"))
    assert sorted(tmp_path.iterdir()) == [source.path]


def test_signed_samples_are_shifted_into_the_unsigned_range(tmp_path):
    # As some multiplex exports write them: int8, axes TZYX, no physical size.
    path = tmp_path / "signed.ome.tif"
    data = (np.arange(2 * 300 * 200) % 256 - 128).astype(np.int8).reshape(2, 300, 200)
    tifffile.imwrite(path, data, tile=(128, 128), compression="zlib", metadata={"axes": "TYX"})
    warnings: list[str] = []
    paths = convert_slide(path, tmp_path / "out", warn=warnings.append)
    assert [p.name for p in paths] == ["level0-c0.dcm"]
    assert np.array_equal(_channel_pixels(paths, 0, 0), (data[0].astype(np.int16) + 128))
    assert any("shifted by +128" in w for w in warnings)
    assert any("time point 1 of 2" in w for w in warnings)
    assert "shifted by +128" in pydicom.dcmread(paths[0], stop_before_pixels=True).ImageComments


def _leftovers(folder: Path, keep: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p != keep)


@pytest.mark.parametrize(
    "dtype, kind",
    [
        (np.float64, "64-bit floating point"),
        (np.complex64, "complex"),
        (np.uint32, "32-bit integer"),
    ],
)
def test_unsupported_sample_formats_are_refused(tmp_path, dtype, kind):
    path = tmp_path / "odd.ome.tif"
    data = np.ones((3, 256, 256), dtype=dtype)
    tifffile.imwrite(path, data, tile=(128, 128), metadata={"axes": "CYX"})
    with pytest.raises(ConversionError) as caught:
        convert_slide(path, tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f"odd.ome.tif: unsupported sample format {np.dtype(dtype)}")
    assert kind in message
    assert _leftovers(tmp_path, path) == []


def test_a_corrupt_channel_page_is_named_and_nothing_is_written(tmp_path):
    source = write_ome(tmp_path / "broken.ome.tif", channels=3, dtype=np.uint16, levels=1)
    with tifffile.TiffFile(source.path) as tif:
        fitc_page = tif.series[0].pages[1].index  # channel 1 of Z = T = 0
    corrupt_tile(source.path, fitc_page)
    with pytest.raises(ConversionError) as caught:
        convert_slide(source.path, tmp_path / "out")
    message = str(caught.value)
    assert "broken.ome.tif: cannot decode channel 'FITC' for the 600x700 level" in message
    assert _leftovers(tmp_path, source.path) == []


def test_mismatched_channel_sizes_are_refused(tmp_path):
    source = write_qptiff(tmp_path / "mismatch.qptiff", channels=3, shrink_channel=1)
    with pytest.raises(ConversionError) as caught:
        convert_slide(source.path, tmp_path / "out")
    assert str(caught.value) == (
        "mismatch.qptiff: mismatched channel sizes: channel 'FITC' is 256x320 at level 0, "
        "channel 'DAPI' 512x640"
    )
    assert _leftovers(tmp_path, source.path) == []


def test_qptiff_objective_and_channel_colours_are_read(fluorescence):
    ds = pydicom.dcmread(fluorescence["qptiff-3ch"].instance(0, 0), stop_before_pixels=True)
    assert float(ds.OpticalPathSequence[0].ObjectiveLensPower) == 20.0
    assert ds.Manufacturer  # the IOD's Type 2 equipment attributes stay filled


def test_ndpi_fluorescence_is_labelled_with_its_filter(wsi_converted):
    ds = wsi_converted["test3-DAPI-2.ndpi"].header("level0.dcm")
    (path,) = ds.OpticalPathSequence
    assert path.IlluminationTypeCodeSequence[0].CodeMeaning == "Epifluorescence illumination"
    assert float(path.IlluminationWaveLength) == 387
    assert int(path.ImagePathFilterPassThroughWavelength) == 455
    assert path.OpticalPathDescription == "DAPI 2 (387)"
    brightfield = wsi_converted["CMU-1-Small-Region.svs"].header("level0.dcm")
    code = brightfield.OpticalPathSequence[0].IlluminationTypeCodeSequence[0]
    assert code.CodeMeaning == "Brightfield illumination"


def test_command_line_warns_and_takes_the_plane_flags(tmp_path):
    source = write_ome(
        tmp_path / "cli.ome.tif", channels=3, dtype=np.uint8, z=2, physical_size=None, levels=1
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsi",
            "convert",
            str(source.path),
            "--out",
            str(tmp_path / "out"),
            "--z",
            "1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (
        "convert: warning: Pixel spacing not recorded by the scanner; assumed 1 um/pixel"
        in run.stderr
    )
    assert "convert: warning: Z plane 2 of 2 and time point 1 of 1 of the source" in run.stderr
    assert len(run.stdout.split()) == 3


@pytest.mark.parametrize("planar", [False, True], ids=["contiguous", "planar"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_samples_of_one_page_are_the_channels_even_as_pure_noise(tmp_path, planar, dtype):
    # Noise is the worst case for a lossless codec: its output is larger than the input.
    noise = np.random.default_rng(3).integers(0, np.iinfo(dtype).max, (300, 400, 4), dtype=dtype)
    data = np.ascontiguousarray(np.moveaxis(noise, -1, 0)) if planar else noise
    path = tmp_path / "samples.tif"
    config = "separate" if planar else "contig"
    tifffile.imwrite(
        path, data, photometric="minisblack", planarconfig=config, tile=(128, 128), metadata=None
    )
    paths = convert_slide(path, tmp_path / "out")
    assert len(paths) == 4
    for channel in range(4):
        assert np.array_equal(_channel_pixels(paths, 0, channel), noise[..., channel])


def _handed_over(tmp_path: Path, progressive: bool) -> tuple[list[str], list[Path], Fluorescence]:
    """Convert a three-channel slide of one source level (two small generated levels); the
    names handed over in order, with whether each was in the output folder right then."""
    source = write_ome(
        tmp_path / "one.ome.tif", channels=3, dtype=np.uint16, size=(2200, 1700), levels=1
    )
    out = tmp_path / "out"
    order: list[str] = []

    def handed(instance) -> None:
        assert instance.path.parent == out and instance.path.is_file()
        order.append(instance.path.name)

    options = ConvertOptions(progressive=progressive)
    paths = convert_slide(source.path, out, options=options, on_instance=handed)
    return order, paths, source


def test_a_progressive_conversion_hands_over_each_channel_smallest_levels_first(tmp_path):
    order, paths, source = _handed_over(tmp_path, progressive=True)
    # A level comes once all its channels are written; the small generated ones first.
    assert order == [f"level{lv}-c{c}.dcm" for lv in (2, 1, 0) for c in range(3)]
    assert sorted(p.name for p in paths) == sorted(order)
    for channel in range(3):
        assert np.array_equal(_channel_pixels(paths, 0, channel), source.planes[0][channel])


def test_a_conversion_reports_every_channel_instance_once_published(tmp_path):
    order, paths, _ = _handed_over(tmp_path, progressive=False)
    assert order == [p.name for p in paths]
    assert sorted(order) == sorted(f"level{lv}-c{c}.dcm" for lv in range(3) for c in range(3))


def test_a_progressive_conversion_failing_part_way_keeps_what_it_handed_over(tmp_path):
    """From a source of one level the small levels read all of it, so a corrupt page is found
    before anything is handed over; one in a level 0 below a pyramid of the source's own levels
    comes after the smaller levels were handed over, and those stay (the caller's)."""
    flat = write_ome(
        tmp_path / "flat.ome.tif", channels=3, dtype=np.uint16, size=(2200, 1700), levels=1
    )
    pyramid = write_ome(
        tmp_path / "pyramid.ome.tif", channels=3, dtype=np.uint16, size=(2200, 1700), levels=3
    )
    handed: dict[str, list[str]] = {}
    for source in (flat, pyramid):
        with tifffile.TiffFile(source.path) as tif:
            fitc_page = tif.series[0].pages[1].index  # level 0, channel 1 of Z = T = 0
        corrupt_tile(source.path, fitc_page)
        names = handed[source.path.name] = []
        with pytest.raises(ConversionError) as caught:
            convert_slide(
                source.path,
                tmp_path / f"out-{source.path.stem}",
                options=ConvertOptions(progressive=True),
                on_instance=lambda instance, names=names: names.append(instance.path.name),
            )
        assert "cannot decode channel 'FITC'" in str(caught.value)
    assert handed["flat.ome.tif"] == []
    assert list((tmp_path / "out-flat.ome").iterdir()) == []
    smaller = [f"level{lv}-c{c}.dcm" for lv in (2, 1) for c in range(3)]
    assert handed["pyramid.ome.tif"] == smaller
    out = tmp_path / "out-pyramid.ome"
    assert sorted(p.name for p in out.iterdir()) == sorted(smaller)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".wsi-convert-")] == []
