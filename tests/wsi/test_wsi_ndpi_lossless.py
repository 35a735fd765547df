"""NDPI levels are re-tiled from the scanner's JPEG stripes without decoding: every frame decodes
to exactly OpenSlide's pixels, carries the scanner's own quantisation tables, and the report says
which levels were re-tiled and which had to be decoded."""

from __future__ import annotations

import imagecodecs
import numpy as np
import openslide
import pydicom
import pytest
import tifffile
from hubtest import assert_dciodvfy_clean
from pydicom.encaps import generate_frames

from wsi import ConvertOptions, Instance, convert_slide
from wsi.report import ENCODED, RETILED

NDPI = "test3-DAPI-2.ndpi"


@pytest.fixture(scope="module")
def converted(corpus, tmp_path_factory) -> tuple[list[Instance], openslide.OpenSlide]:
    made: list[Instance] = []
    out = tmp_path_factory.mktemp("ndpi") / "out"
    convert_slide(corpus / "wsi" / NDPI, out, options=ConvertOptions(), on_instance=made.append)
    return made, openslide.OpenSlide(corpus / "wsi" / NDPI)


def _quantisation_tables(stream: bytes) -> list[bytes]:
    """The DQT segments' bodies of a JPEG stream, in order."""
    tables, pos = [], 2
    while pos + 4 <= len(stream) and stream[pos] == 0xFF and stream[pos + 1] != 0xDA:
        length = int.from_bytes(stream[pos + 2 : pos + 4], "big")
        if stream[pos + 1] == 0xDB:
            tables.append(stream[pos + 4 : pos + 2 + length])
        pos += 2 + length
    return tables


def test_report_says_how_each_level_was_made(converted, corpus):
    made, source = converted
    with tifffile.TiffFile(corpus / "wsi" / NDPI) as tif:
        stored = {(lv.shape[1], lv.shape[0]) for lv in tif.series[0].levels}
    volumes = {(i.width, i.height): i for i in made if i.kind == "VOLUME"}
    assert set(volumes) == set(source.level_dimensions)
    for size, instance in volumes.items():
        # Stored levels are re-tiled; OpenSlide's extra levels (libjpeg's scaled decoding of the
        # smallest stored one) have no stripes of their own and must be decoded.
        assert instance.made == (RETILED if size in stored else ENCODED), size
        assert instance.mended == 0
    assert "re-tiled losslessly" in volumes[source.dimensions].describe()


def test_every_retiled_frame_decodes_to_openslides_pixels(converted, corpus):
    made, source = converted
    with tifffile.TiffFile(corpus / "wsi" / NDPI) as tif:
        scanner_tables = _quantisation_tables(tif.pages.first.jpegheader)
    retiled = [i for i in made if i.made == RETILED]
    assert len(retiled) == 4
    for instance in retiled:
        ds = pydicom.dcmread(instance.path)
        assert ds.ImageType[0] == "ORIGINAL" and ds.LossyImageCompression == "01"
        level = source.level_dimensions.index((instance.width, instance.height))
        rows, cols = ds.Rows, ds.Columns
        across = -(-instance.width // cols)
        frames = list(generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames))
        assert len(frames) == instance.frames == across * -(-instance.height // rows)
        scale = round(source.level_downsamples[level])
        for index, frame in enumerate(frames):
            assert _quantisation_tables(frame) == scanner_tables, "the frame was re-encoded"
            ty, tx = divmod(index, across)
            x, y = tx * cols, ty * rows
            w, h = min(cols, instance.width - x), min(rows, instance.height - y)
            want = np.asarray(source.read_region((x * scale, y * scale), level, (w, h)))
            got = imagecodecs.jpeg8_decode(frame)
            assert got.shape == (rows, cols, 3)
            assert np.array_equal(got[:h, :w], want[..., :3]), f"{instance.path.name} #{index}"
            assert (got[h:] == 255).all() and (got[:, w:] == 255).all()  # edge fill: white


def test_retiled_levels_conform(converted):
    made, _ = converted
    assert_dciodvfy_clean(instance.path for instance in made)
