"""The stained slide of the AI tests (ai_slides.py), converted once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from ai_slides import convert


@pytest.fixture(scope="session")
def slide_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return convert(tmp_path_factory.mktemp("ai-slide"))
