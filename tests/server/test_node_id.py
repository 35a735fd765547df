"""A node keeps one id across restarts; a configured id wins; a bad one is refused by name; the
cluster timings are checked together."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hub.config import ClusterSettings, Settings, SettingsError
from hub.serve.nodes import ID_FILE, NodeIdError, node_id


def test_made_once_and_kept_in_the_data_folder(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    first = node_id(settings)
    assert first and (tmp_path / "data" / ID_FILE).read_text().strip() == first
    assert node_id(settings) == first
    assert node_id(Settings(data_dir=tmp_path / "other")) != first


def test_the_setting_wins(tmp_path):
    settings = replace(Settings(data_dir=tmp_path), cluster=ClusterSettings(node_id="node-a"))
    assert node_id(settings) == "node-a"
    assert not (tmp_path / ID_FILE).exists()


@pytest.mark.parametrize("bad", ["x" * 65, " padded", "tab\there"])
def test_a_bad_id_is_refused_by_where_it_came_from(tmp_path, bad):
    with pytest.raises(NodeIdError, match="cluster.node_id"):
        node_id(replace(Settings(data_dir=tmp_path), cluster=ClusterSettings(node_id=bad)))
    (tmp_path / ID_FILE).write_text("\n")
    with pytest.raises(NodeIdError, match=ID_FILE):
        node_id(Settings(data_dir=tmp_path))


def test_a_heartbeat_no_shorter_than_the_lease_is_refused_by_name():
    with pytest.raises(SettingsError, match="cluster.*heartbeat_seconds"):
        Settings.from_env({"TESSERA_LEASE_SECONDS": "2"})  # the heartbeat stays 2 s
    settings = Settings.from_env(
        {"TESSERA_LEASE_SECONDS": "30", "TESSERA_EXTRA": '{"cluster": {"sweep_seconds": 60}}'}
    )
    assert settings.cluster.lease_seconds == 30 and settings.cluster.sweep_seconds == 60
