"""Helpers for the DIMSE tests: dcmtk tools run without blocking the event loop, storescu
configurations that propose each file's own transfer syntax, and Part-10 byte helpers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import data_store
import pydicom
import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import UID
from pynetdicom.dsutils import split_dataset

from hub.archive import Archive
from hub.config import Settings
from hub.dimse.config import DimseConfig
from hub.dimse.service import DimseServer
from hub.security.dimse_acl import SERVICES, allow_ae

PYDICOM_DATA = Path(data_store.__file__).parent / "data"
HOST = "127.0.0.1"


def need_dcmtk() -> None:
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed")


@dataclass
class Run:
    rc: int
    out: str

    def __str__(self) -> str:
        return f"rc={self.rc}\n{self.out[-4000:]}"


async def run(*cmd: str | Path, seconds: float = 120) -> Run:
    """Run a peer tool as a subprocess; the loop stays free to serve the SCP's archive calls."""
    proc = await asyncio.create_subprocess_exec(
        *map(str, cmd), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), seconds)
    return Run(proc.returncode or 0, out.decode(errors="replace"))


def wait_for_port(port: int, seconds: float = 60) -> None:
    """Block until something accepts connections on `port` (a peer just started)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass(frozen=True)
class Sample:
    path: Path
    sop_class: str
    sop_uid: str
    syntax: str


def pydicom_data_samples() -> list[Sample]:
    """Every pydicom-data file pydicom reads as Part 10 with SOP UIDs."""
    samples = []
    for path in sorted(PYDICOM_DATA.iterdir()):
        try:
            ds = dcmread(path, stop_before_pixels=True)
            samples.append(
                Sample(path, ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID)
            )
        except Exception:
            continue
    return samples


def storescu_config(samples: list[Sample], path: Path) -> Path:
    """A storescu --config-file profile "Exact": one context per (SOP class, own syntax)."""
    pairs = sorted({(s.sop_class, s.syntax) for s in samples})
    syntaxes = sorted({ts for _, ts in pairs})
    lines = ["[[TransferSyntaxes]]"]
    for i, ts in enumerate(syntaxes):
        lines += [f"[TS{i}]", f"TransferSyntax1 = {ts}"]
    lines += ["[[PresentationContexts]]", "[Exact]"]
    for n, (sop_class, ts) in enumerate(pairs, start=1):
        lines.append(f"PresentationContext{n} = {sop_class}\\TS{syntaxes.index(ts)}")
    lines += ["[[Profiles]]", "[Exact]", "PresentationContexts = Exact"]
    path.write_text("\n".join(lines) + "\n")
    return path


def dataset_bytes(path: Path) -> bytes:
    """The data set of a Part-10 file without preamble and file meta (what goes on the wire)."""
    _, offset = split_dataset(path)
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def dataset_sha(path: Path) -> str:
    return hashlib.sha256(dataset_bytes(path)).hexdigest()


def syntax_of(path: Path) -> UID:
    return dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID


def content(path: Path) -> Dataset:
    """The data set without what senders legitimately rewrite (group lengths, trailing
    padding, the VR of encapsulated Pixel Data), for comparison."""
    ds = dcmread(path)
    for tag in [e.tag for e in ds if e.tag.element == 0 or e.tag == 0xFFFCFFFC]:
        del ds[tag]
    if "PixelData" in ds and ds.file_meta.TransferSyntaxUID.is_encapsulated:
        ds["PixelData"].VR = "OB"  # dcmtk corrects OW to OB for encapsulated pixel data
    return ds


PYDICOM_TESTS = Path(pydicom.__file__).parent / "data" / "test_files"

# One file per transfer syntax, unique SOP Instance UIDs, several patients and studies.
RETRIEVE_SET = {
    "MR2_J2KR.dcm": PYDICOM_DATA,  # JPEG 2000 lossless
    "RG3_J2KI.dcm": PYDICOM_DATA,  # JPEG 2000
    "JPEG-LL.dcm": PYDICOM_DATA,  # JPEG lossless SV1
    "OBXXXX1A_rle.dcm": PYDICOM_DATA,  # RLE
    "gdcm-US-ALOKA-16_big.dcm": PYDICOM_DATA,  # explicit VR big endian
    "emri_small_jpeg_ls_lossless.dcm": PYDICOM_DATA,  # JPEG-LS lossless
    "MR_small_implicit.dcm": PYDICOM_TESTS,  # implicit VR little endian
    "JPEG-lossy.dcm": PYDICOM_TESTS,  # JPEG extended
    "CT_small.dcm": PYDICOM_TESTS,  # explicit VR little endian
    "SC_rgb_jpeg_dcmtk.dcm": PYDICOM_TESTS,  # JPEG baseline
    "rtplan.dcm": PYDICOM_TESTS,  # a non-image object
    "image_dfl.dcm": PYDICOM_TESTS,  # deflated explicit VR little endian
}


def retrieve_samples() -> list[Sample]:
    samples = []
    for name, folder in RETRIEVE_SET.items():
        ds = dcmread(folder / name, stop_before_pixels=True)
        samples.append(
            Sample(folder / name, ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID)
        )
    return samples


async def store_with_storescu(address: list[str], samples: list[Sample], workdir: Path) -> Run:
    cfg = storescu_config(samples, workdir / "exact.cfg")
    result = await run(
        "storescu", "-v", "--config-file", cfg, "Exact", *address, *[s.path for s in samples]
    )
    assert result.rc == 0 and result.out.count("(Success)") == len(samples), result
    return result


async def findscu(address: list[str], model: str, keys: list[str], out: Path) -> list[Dataset]:
    """findscu -P|-S|-W with -k keys; the responses as Datasets."""
    empty_folder(out)
    args = [a for k in keys for a in ("-k", k)]
    result = await run("findscu", model, "-X", "-od", out, *args, *address)
    assert result.rc == 0, result
    return read_all(out)


def empty_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    return folder


def listing(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def read_all(folder: Path) -> list[Dataset]:
    return [dcmread(p) for p in listing(folder)]


AE = "TESSERA"


@dataclass
class StoreSCP:
    """dcmtk storescp writing what it receives, bit-preserving, into `folder`."""

    folder: Path
    port: int
    ae: str = "RECEIVER"
    proc: subprocess.Popen | None = None
    tls: tuple[Path, Path] | None = None  # (key, certificate): DICOM over TLS only

    def start(self) -> StoreSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        # +B: write the received data set as it came; -xa/+xa: accept every transfer syntax.
        # -ic: no client certificate asked for.
        tls = ["+tls", str(self.tls[0]), str(self.tls[1]), "-ic"] if self.tls else []
        self.proc = subprocess.Popen(
            [
                "storescp",
                *tls,
                "-aet",
                self.ae,
                "+B",
                "+xa",
                "-od",
                str(self.folder),
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())


@dataclass
class DimseHub:
    archive: Archive
    server: DimseServer
    settings: Settings

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> list[str]:
        return ["-aec", AE, HOST, str(self.port)]


# Calling AE titles of the peers these tests run: dcmtk's and pynetdicom's defaults and the
# titles tests give their SCUs. The port denies by default, so they are allowed by name.
TEST_AES = (
    "ECHOSCU", "STORESCU", "FINDSCU", "MOVESCU", "GETSCU", "PYNETDICOM",
    "SLOWSCU", "CRAFTER", "RAWSCU", "GOODSCU", "WAKEUPS", "MODALITY", "SENDER",
)  # fmt: skip


async def allow_test_aes(archive: Archive, titles: tuple[str, ...] = TEST_AES) -> None:
    """Allow the test peers every service, as administrators (the CLI's own call)."""
    for title in titles:
        await allow_ae(archive.engine, title, list(SERVICES), role="admin", note="tests")


@contextlib.asynccontextmanager
async def running_dimse_hub(
    settings: Settings,
    prepare: Callable[[Archive], Awaitable[None]] | None = None,
    allow: tuple[str, ...] = TEST_AES,
) -> AsyncIterator[DimseHub]:
    """The DIMSE SCP on a fresh archive for ``settings``, the ``allow`` AEs on its allow-list;
    ``prepare`` runs before it starts."""
    archive = await Archive.open(settings)
    await allow_test_aes(archive, allow)
    if prepare is not None:
        await prepare(archive)
    server = DimseServer(archive, DimseConfig.from_settings(settings), asyncio.get_running_loop())
    await asyncio.to_thread(server.start)
    try:
        yield DimseHub(archive, server, settings)
    finally:
        await asyncio.to_thread(server.stop)
        await archive.close()
