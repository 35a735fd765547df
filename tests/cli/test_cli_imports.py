"""The command line imports only what a command needs: help and parsing load no database, DICOM,
HTTP or password-hashing library, and the wsi library loads nothing of the hub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# asyncio too: its import alone costs a third of the time help may take.
HEAVY = {"sqlalchemy", "pydicom", "aiohttp", "argon2", "asyncio"}


def imported(*argv: str) -> tuple[set[str], str]:
    """The modules a fresh interpreter imports to run ``argv`` (from ``-X importtime``, which
    lists what import statements load, not modules loaded by importlib.import_module), and what
    it printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return modules, run.stdout


def packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["--help"], ["user", "audit", "ae", "worklist", "forward", "convert"]),
        (["convert", "--help"], ["--into-archive", "--quiet"]),
    ],
    ids=["tessera --help", "tessera convert --help"],
)
def test_tessera_help_loads_no_heavy_library(command: list[str], shown: list[str]) -> None:
    modules, printed = imported("-m", "hub.cli", *command)
    assert all(word in printed for word in shown), printed  # every package's parser was built
    assert packages(modules) & HEAVY == set()


def test_wsi_command_help_loads_nothing_of_the_hub() -> None:
    modules, printed = imported("-m", "wsi", "convert", "--help")
    assert "--out" in printed and "--into-archive" not in printed
    assert "hub" not in packages(modules)
    assert packages(modules) & HEAVY == set()


def test_importing_wsi_loads_nothing_of_the_hub() -> None:
    modules, _ = imported("-c", "import wsi, wsi.cli")
    assert {"wsi", "wsi.cli"} <= modules
    assert "hub" not in packages(modules)
