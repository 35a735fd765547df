"""`tessera import` as a person runs it: a path that does not exist is a message and an exit
code, not a traceback; an incomplete object is imported with its warning printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydicom.data import get_testdata_file


def tessera(data: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "import", "--data", str(data), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_missing_path_is_named_and_nothing_is_imported(tmp_path: Path) -> None:
    good = get_testdata_file("CT_small.dcm")
    run = tessera(tmp_path / "data", good, str(tmp_path / "no-such-folder"))
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"no such file or folder: {tmp_path / 'no-such-folder'}" in run.stderr
    assert not (tmp_path / "data").exists()  # refused before the archive was opened


def test_an_object_without_modality_is_imported_with_a_warning(tmp_path: Path) -> None:
    path = get_testdata_file("SC_rgb_jpeg_app14_dcmd.dcm")
    run = tessera(tmp_path / "data", path)
    assert run.returncode == 0, run.stderr
    assert "1 stored" in run.stdout
    assert f"warning: {path}: Modality (Type 1, General Series Module) is missing" in run.stdout
