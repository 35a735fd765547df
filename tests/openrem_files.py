"""OpenREM's test files (GPL, never committed): the OpenREM 0.10.0 sdist, fetched from PyPI
with pip into a cache on first use. Kept out of conftest.py so that any test folder can import it.

TESSERA_TEST_CACHE names the cache folder (default ~/.cache/tessera-test).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

OPENREM = "OpenREM==0.10.0"
SDIST = "OpenREM-0.10.0.tar.gz"
MEMBER_PREFIX = "OpenREM-0.10.0/openrem/remapp/tests/test_files/"


def _cache() -> Path:
    return Path(os.environ.get("TESSERA_TEST_CACHE") or Path.home() / ".cache" / "tessera-test")


def openrem_test_files() -> Path:
    """The folder holding OpenREM's test_files/*.dcm."""
    cache = _cache() / "openrem-0.10.0"
    files = cache / "test_files"
    if files.is_dir() and any(files.glob("*.dcm")):
        return files
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / SDIST
    if not sdist.exists():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        command += [OPENREM, "--dest", str(cache), "--quiet"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot download {OPENREM} from PyPI for its test files: {exc}")
        if done.returncode != 0 or not sdist.exists():
            reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no sdist"]
            pytest.skip(f"cannot download {OPENREM} from PyPI for its test files: {reason[0]}")
    partial = cache / f"test_files.{os.getpid()}.partial"
    partial.mkdir(exist_ok=True)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(MEMBER_PREFIX):
                member.name = member.name[len(MEMBER_PREFIX) :]
                if "/" not in member.name and member.name.endswith(".dcm"):
                    tar.extract(member, partial, filter="data")
    try:
        partial.rename(files)
    except OSError:  # another test run extracted them first
        if not files.is_dir():
            raise
    return files
