"""Fixtures of the backup tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from backup_support import sample_paths, tessera


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """A data folder holding the sample objects, imported with ``tessera import``."""
    data = tmp_path / "data"
    imported = tessera("import", *map(str, sample_paths()), data=data)
    assert imported.returncode == 0, imported.stderr
    return data
