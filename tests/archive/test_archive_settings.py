"""Settings from the environment, then from flags."""

from __future__ import annotations

from pathlib import Path

from hub.cli import build_parser, settings_from
from hub.config import Settings


def test_environment_then_flags(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TESSERA_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("TESSERA_DIMSE_PORT", "11112")
    monkeypatch.setenv("TESSERA_AE_TITLE", "HUB1")
    monkeypatch.setenv("TESSERA_EXTRA", '{"forward": {"enabled": false}}')
    s = Settings.from_env()
    assert (s.data_dir, s.dimse_port, s.ae_title) == (tmp_path / "env", 11112, "HUB1")
    assert s.forward.enabled is False
    args = build_parser().parse_args(
        ["--data", str(tmp_path / "flag"), "serve", "--dimse-port", "104", "--ae-title", "HUB2"]
    )
    s = settings_from(args, dimse_port=args.dimse_port, ae_title=args.ae_title)
    assert (s.data_dir, s.dimse_port, s.ae_title) == (tmp_path / "flag", 104, "HUB2")
