"""End-to-end: a fluorescence slide in our viewer, headless Chromium. Each optical path is a
layer in its pseudo-colour, blended additively; toggling a channel removes its colour."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from test_web_viewer import wait_painted
from web_support import Console, chromium, ingest_all, new_page

from wsi import ConvertOptions, SlideIds, convert_slide

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 768, 512
NAMES = ["DAPI", "FITC", "Cy5"]
# Image points at the centres of the four quadrants, away from tile edges (tiles are 256).
POINTS = [(192, 128), (576, 128), (192, 384), (576, 384)]
TOLERANCE = 3  # 8-bit levels: the canvas resamples the tiles slightly when drawing them


def _quadrant_slide(path) -> None:
    """DAPI bright on the left half, FITC on the top half, Cy5 dim everywhere."""
    planes = np.zeros((3, HEIGHT, WIDTH), dtype=np.uint8)
    planes[0, :, : WIDTH // 2] = 200
    planes[1, : HEIGHT // 2, :] = 150
    planes[2] = 90
    metadata = {
        "axes": "CYX",
        "PhysicalSizeX": 0.5,
        "PhysicalSizeY": 0.5,
        "Channel": {
            "Name": NAMES,
            "ExcitationWavelength": [358, 495, 650],
            "EmissionWavelength": [461, 519, 670],
        },
    }
    tifffile.imwrite(path, planes, tile=(256, 256), compression="zlib", metadata=metadata)


@pytest.fixture
async def fluorescence_study(hub_server, tmp_path) -> tuple[str, list]:
    src = tmp_path / "multiplex.ome.tif"
    _quadrant_slide(src)
    out = tmp_path / "converted"
    ids = SlideIds(patient_id="P-FLUO", accession="ACC-FLUO")
    paths = await asyncio.to_thread(convert_slide, src, out, ids, ConvertOptions(workers=1))
    return await ingest_all(hub_server.archive, paths), paths


def _dicom_samples(paths, points) -> np.ndarray:
    """[channel][point]: the stored samples at each image point, from the DICOM frames."""
    out = np.zeros((len(NAMES), len(points)))
    for path in paths:
        ds = pydicom.dcmread(path)
        channel = int(ds.OpticalPathSequence[0].OpticalPathIdentifier)
        frames = ds.pixel_array
        across = -(-ds.TotalPixelMatrixColumns // ds.Columns)
        for k, (x, y) in enumerate(points):
            frame = (y // ds.Rows) * across + x // ds.Columns
            out[channel, k] = frames[frame][y % ds.Rows, x % ds.Columns]
    return out


def _composite(samples: np.ndarray, colours: list[list[int]], visible: list[bool]) -> np.ndarray:
    total = np.zeros((samples.shape[1], 3))
    for channel, colour in enumerate(colours):
        if visible[channel]:
            total += samples[channel][:, None] / 255.0 * np.asarray(colour)[None, :]
    return np.clip(total, 0, 255)


async def _shown(page, points) -> np.ndarray:
    """The screen colour at each image point (the mean of a 5x5 block around it)."""
    spots = await page.evaluate(
        """(points) => {
            const vp = window.tesseraViewer.state.viewer.viewport;
            return points.map(([x, y]) => {
                const p = vp.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
                return [Math.round(p.x), Math.round(p.y)];
            });
        }""",
        points,
    )
    shot = np.asarray(
        Image.open(io.BytesIO(await page.locator("#osd").screenshot())).convert("RGB"), float
    )
    return np.array([shot[y - 2 : y + 3, x - 2 : x + 3].mean(axis=(0, 1)) for x, y in spots])


async def test_channels_are_blended_in_their_colours_and_toggle(hub_server, fluorescence_study):
    study, paths = fluorescence_study
    samples = _dicom_samples(paths, POINTS)
    async with chromium() as browser:
        page = await new_page(browser, hub_server, width=960, height=720)
        console = Console(page)
        await page.goto(f"{hub_server.url}/viewer/{study}")
        await page.evaluate("() => window.tesseraViewer.ready")
        channels = await page.evaluate("() => window.tesseraViewer.state.slides[0].channels")
        assert [c["name"] for c in channels] == NAMES
        colours = [c["color"] for c in channels]
        # Pseudo-colours from the emission wavelengths: blue, green, red.
        assert [int(np.argmax(c)) for c in colours] == [2, 1, 0]
        labels = await page.locator("#channel-list label").all_inner_texts()
        assert [t.split()[0] for t in labels] == NAMES

        await wait_painted(page)
        expected = _composite(samples, colours, [True, True, True])
        shown = await _shown(page, POINTS)
        assert np.abs(shown - expected).max() <= TOLERANCE, (shown, expected)

        await page.locator('#channel-list input[data-channel="1"]').uncheck()
        await page.wait_for_function("() => location.hash.includes('channels=101')")
        await wait_painted(page)
        without_fitc = _composite(samples, colours, [True, False, True])
        shown = await _shown(page, POINTS)
        assert np.abs(shown - without_fitc).max() <= TOLERANCE, (shown, without_fitc)
        # FITC's green is gone from the top half, where it was 150 of 255.
        assert (expected[:2, 1] - shown[:2, 1]).min() > 100

        # The channel state is in the deep link: a fresh page shows the same layers.
        link = page.url
        again = await new_page(browser, hub_server, width=960, height=720)
        await again.goto(link)
        await again.evaluate("() => window.tesseraViewer.ready")
        visible = await again.evaluate(
            "() => window.tesseraViewer.state.slides[0].channels.map(c => c.visible)"
        )
        assert visible == [True, False, True]
        assert await again.locator('#channel-list input[data-channel="1"]').is_checked() is False
        assert console.errors == []
