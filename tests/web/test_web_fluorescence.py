"""End-to-end: a fluorescence slide in our viewer, headless Chromium. Each optical path is a
layer in its pseudo-colour, windowed by its black and white points (auto-contrast from the
smallest level's histogram), blended additively; toggling a channel removes its colour."""

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


CLIP_FRACTION = 0.001  # of each channel's samples clipped at each end by the auto-contrast


def _quadrant_slide(path, dtype) -> None:
    """DAPI bright on the left half, FITC on the top half, Cy5 rising from left to right; 16-bit
    slides use 12 of their bits, as many cameras do."""
    top = 4095 if dtype == np.uint16 else 255
    planes = np.zeros((3, HEIGHT, WIDTH), dtype=dtype)
    planes[0, :, : WIDTH // 2] = top * 3 // 4
    planes[0, :, WIDTH // 2 :] = top // 10
    planes[1, : HEIGHT // 2, :] = top * 2 // 3
    planes[2] = (np.arange(WIDTH) * (top * 0.7 / WIDTH)).astype(dtype)[None, :]
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


@pytest.fixture(params=[np.uint8, np.uint16], ids=["8bit", "16bit"])
async def fluorescence_study(request, hub_server, tmp_path) -> tuple[str, list]:
    src = tmp_path / "multiplex.ome.tif"
    _quadrant_slide(src, request.param)
    out = tmp_path / "converted"
    ids = SlideIds(patient_id="P-FLUO", accession="ACC-FLUO")
    paths = await asyncio.to_thread(convert_slide, src, out, ids, ConvertOptions(workers=1))
    return await ingest_all(hub_server.archive, paths), paths


def _channel_planes(paths) -> list[np.ndarray]:
    """Each channel's whole image, assembled from the frames of its DICOM instance (the slide
    has one level, so it is also the smallest)."""
    planes = [None] * len(NAMES)
    for path in paths:
        ds = pydicom.dcmread(path)
        channel = int(ds.OpticalPathSequence[0].OpticalPathIdentifier)
        frames = ds.pixel_array
        across = -(-ds.TotalPixelMatrixColumns // ds.Columns)
        down = -(-ds.TotalPixelMatrixRows // ds.Rows)
        rows = [np.hstack(list(frames[r * across : (r + 1) * across])) for r in range(down)]
        planes[channel] = np.vstack(rows)[: ds.TotalPixelMatrixRows, : ds.TotalPixelMatrixColumns]
    return planes


def _auto_contrast(plane: np.ndarray) -> tuple[int, int]:
    ordered = np.sort(plane, axis=None)
    n = ordered.size
    black = int(ordered[int(np.floor(CLIP_FRACTION * (n - 1)))])
    white = int(ordered[int(np.ceil((1 - CLIP_FRACTION) * (n - 1)))])
    return black, max(white, black + 1)


def _composite(planes, colours, windows, visible, points) -> np.ndarray:
    total = np.zeros((len(points), 3))
    for plane, colour, (black, white), shown in zip(planes, colours, windows, visible, strict=True):
        if shown:
            samples = np.array([float(plane[y, x]) for x, y in points])
            level = np.clip((samples - black) / (white - black), 0, 1)
            total += level[:, None] * np.asarray(colour, float)[None, :]
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
    planes = _channel_planes(paths)
    windows = [_auto_contrast(plane) for plane in planes]
    async with chromium() as browser:
        page = await new_page(browser, hub_server, width=960, height=720)
        console = Console(page)
        await page.goto(f"{hub_server.url}/viewer/{study}")
        await page.evaluate("() => window.tesseraViewer.ready")
        await wait_painted(page)
        channels = await page.evaluate("() => window.tesseraViewer.state.slides[0].channels")
        assert [c["name"] for c in channels] == NAMES
        colours = [c["color"] for c in channels]
        # Pseudo-colours from the emission wavelengths: blue, green, red.
        assert [int(np.argmax(c)) for c in colours] == [2, 1, 0]
        assert [(c["black"], c["white"]) for c in channels] == windows
        labels = await page.locator("#channel-list label").all_inner_texts()
        assert [t.split()[0] for t in labels] == NAMES

        expected = _composite(planes, colours, windows, [True] * 3, POINTS)
        shown = await _shown(page, POINTS)
        assert np.abs(shown - expected).max() <= TOLERANCE, (shown, expected)

        await page.locator('#channel-list input[type="checkbox"][data-channel="1"]').uncheck()
        await page.wait_for_function("() => location.hash.includes('channels=101')")
        await wait_painted(page)
        without_fitc = _composite(planes, colours, windows, [True, False, True], POINTS)
        shown = await _shown(page, POINTS)
        assert np.abs(shown - without_fitc).max() <= TOLERANCE, (shown, without_fitc)
        # FITC's green is gone from the top half, where it was at its white point.
        assert (expected[:2, 1] - shown[:2, 1]).min() > 100

        # A wider window for DAPI: its blue at the left halves.
        black, white = windows[0]
        windows[0] = (black, black + 2 * (white - black))
        await page.evaluate("(w) => window.tesseraViewer.setContrast(0, w[0], w[1])", windows[0])
        await wait_painted(page)
        dimmer = _composite(planes, colours, windows, [True, False, True], POINTS)
        shown = await _shown(page, POINTS)
        assert np.abs(shown - dimmer).max() <= TOLERANCE, (shown, dimmer)
        assert shown[0, 2] == pytest.approx(without_fitc[0, 2] / 2, abs=TOLERANCE)

        # The channel state is in the deep link: a fresh page shows the same layers.
        await page.wait_for_function(
            "(w) => location.hash.includes(`contrast=${w[0]}:${w[1]},`)", arg=windows[0]
        )
        again = await new_page(browser, hub_server, width=960, height=720)
        await again.goto(page.url)
        await again.evaluate("() => window.tesseraViewer.ready")
        await wait_painted(again)
        state = await again.evaluate("() => window.tesseraViewer.state.slides[0].channels")
        assert [c["visible"] for c in state] == [True, False, True]
        assert [(c["black"], c["white"]) for c in state] == windows
        box = again.locator('#channel-list input[type="checkbox"][data-channel="1"]')
        assert await box.is_checked() is False
        assert console.errors == []
