"""`tessera demo`: a hub with sample data, ready in a browser within a minute.

Loads one converted whole-slide image (from the shared test corpus) and one real ultrasound
cine (from pydicom-data), serves over HTTPS with a self-signed localhost certificate, and
prints where to go and how to sign in.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from pathlib import Path

from hub.app import open_archive
from hub.archive import Archive, Source
from hub.config import Settings

SAMPLE_SLIDE = "CMU-1-Small-Region.svs"
SAMPLE_CINE = "color3d_jpeg_baseline.dcm"
CORPUS_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "shared" / "corpus",
    Path.cwd().parent / "shared" / "corpus",
)


def corpus_dir() -> Path | None:
    return next((p for p in CORPUS_CANDIDATES if p.is_dir()), None)


async def load_samples(archive: Archive) -> list[str]:
    """Ingest the samples unless they are there already; returns what was loaded."""
    loaded = []
    if not await archive.search(_query("SM")):
        slide = _slide_path()
        if slide is not None:
            loaded.append(await _load_slide(archive, slide))
    if not await archive.search(_query("US")):
        loaded.append(await _load_cine(archive))
    return loaded


def _query(modality: str):
    from hub.archive.query import Query

    return Query(level="STUDY", keys={"ModalitiesInStudy": modality}, limit=1)


def _slide_path() -> Path | None:
    corpus = corpus_dir()
    path = corpus / "wsi" / SAMPLE_SLIDE if corpus else None
    return path if path and path.exists() else None


async def _load_slide(archive: Archive, slide: Path) -> str:
    from wsi import SlideIds, convert_slide

    ids = SlideIds(patient_id="DEMO-0001", patient_name="Demo^Slide", accession="DEMO-WSI-1")
    with tempfile.TemporaryDirectory(dir=archive.settings.data_dir) as out:
        loop = asyncio.get_running_loop()
        paths = await loop.run_in_executor(None, convert_slide, slide, Path(out), ids)
        for path in paths:
            await archive.ingest_file(path, source=Source("wsi", actor="demo"))
    return f"slide {slide.name} ({len(paths)} instances)"


async def _load_cine(archive: Archive) -> str:
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file(SAMPLE_CINE))
    result = await archive.ingest_file(path, source=Source("import", actor="demo"))
    return f"ultrasound cine {path.name} ({result.status})"


async def run_demo(settings: Settings) -> int:
    from hub.security.accounts import create_user, list_users, set_password
    from hub.security.tls import make_self_signed
    from hub.serve.server import serve

    archive = await open_archive(settings, schema="upgrade")
    try:
        print("Loading sample data ...", flush=True)
        for line in await load_samples(archive):
            print(f"  loaded {line}", flush=True)
        password = secrets.token_urlsafe(12)
        if "demo" not in {u["username"] for u in await list_users(archive.engine)}:
            await create_user(archive.engine, "demo", "admin", password)
        else:
            await set_password(archive.engine, "demo", password)
    finally:
        await archive.close()
    cert, key = make_self_signed(settings.data_dir / "tls")
    url = (
        f"https://{'localhost' if settings.host == '127.0.0.1' else settings.host}:{settings.port}/"
    )

    def banner() -> None:
        print(
            f"\nOpen {url} (self-signed certificate: accept it once)\n"
            f"Sign in as: demo\nPassword:   {password}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )

    return await serve(settings, (cert, key), banner=banner)
