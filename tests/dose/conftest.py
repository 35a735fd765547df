"""Fixtures of the dose tests: OpenREM's test files."""

from __future__ import annotations

from pathlib import Path

import pytest
from openrem_files import openrem_test_files


@pytest.fixture(scope="session")
def openrem() -> Path:
    """The folder holding OpenREM's test_files/*.dcm (skips when they cannot be fetched)."""
    return openrem_test_files()
