"""Routing rules decide, inside the ingest transaction, which targets get which objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from forward_peers import forward_config
from pydicom.data import get_testdata_file

from hub.archive import Source
from hub.config import Settings
from hub.forward.config import ConfigError, load_config, parse_config

TARGETS = {
    "pacs": {"type": "dimse", "host": "127.0.0.1", "port": 104, "called_ae": "PACS"},
    "vna": {"type": "stow", "url": "http://127.0.0.1:9/dicomweb"},
}
RULES = [
    {"name": "ultrasound", "target": "pacs", "match": {"modality": "US", "door": "telehealth"}},
    {
        "name": "slides",
        "target": "vna",
        "match": {"sop_class": "VLWholeSlideMicroscopyImageStorage"},
    },
    {"name": "scanner", "targets": ["pacs", "vna"], "match": {"calling_ae": "ct_scanner"}},
]


async def test_rules_route_by_modality_sop_class_door_and_calling_ae(hub_factory, corpus):
    hub = await hub_factory(forward_config(TARGETS, RULES, enabled=False))
    ingest = [
        (get_testdata_file("US1_J2KR.dcm"), Source("telehealth", actor="clinic1")),
        (get_testdata_file("color3d_jpeg_baseline.dcm"), Source("dimse", calling_ae="US_CART")),
        (corpus / "dicom-wsi" / "sm_image.dcm", Source("import")),
        (get_testdata_file("CT_small.dcm"), Source("dimse", calling_ae="CT_SCANNER")),
        (get_testdata_file("MR_small.dcm"), Source("dimse", calling_ae="MR_SCANNER")),
    ]
    sops = []
    for path, source in ingest:
        res = await hub.archive.ingest_file(Path(path), source=source)
        assert res.status == "stored", res
        sops.append(res.sop_instance_uid)
    us_telehealth, us_dimse, slide, ct, mr = sops

    routed = {(t.sop_uid, t.target, t.rule) for t in await hub.forwarder.queue.list()}
    assert routed == {
        (us_telehealth, "pacs", "ultrasound"),
        (slide, "vna", "slides"),
        (ct, "pacs", "scanner"),
        (ct, "vna", "scanner"),
    }
    assert all(t.state == "pending" for t in await hub.forwarder.queue.list())

    again = await hub.archive.ingest_file(get_testdata_file("CT_small.dcm"), source=ingest[3][1])
    assert again.status == "duplicate"
    assert len(await hub.forwarder.queue.list(sop_uid=ct)) == 2  # a duplicate is not resent


def test_settings_extra_adds_to_and_overrides_the_data_dir_file(tmp_path):
    (tmp_path / "forward.json").write_text(
        '{"targets": {"pacs": {"host": "10.0.0.1", "port": 104, "called_ae": "OLD"}},'
        ' "rules": [{"target": "pacs"}], "retry": {"base": 30}}'
    )
    environ = {"VNA_TOKEN": "from-env"}
    extra = {
        "targets": {
            "pacs": {"host": "10.0.0.2", "port": 11112, "called_ae": "NEW", "tls": True},
            "vna": {"type": "stow", "url": "https://vna/dicomweb", "token_env": "VNA_TOKEN"},
        },
        "rules": [{"name": "slides", "target": "vna", "match": {"modality": "SM"}}],
    }
    config = load_config(
        Settings.from_env(
            {**environ, "TESSERA_EXTRA": json.dumps({"forward": extra})}, data_dir=tmp_path
        )
    )

    assert config.targets["pacs"].called_ae == "NEW" and config.targets["pacs"].tls is not None
    assert config.targets["vna"].token == "from-env"
    assert [r.name for r in config.rules] == ["rule-1", "slides"]
    assert config.retry.base == 30 and config.retry.max_attempts == 12
    assert config.retry.delay(1) == 30 and config.retry.delay(50) == config.retry.max_delay


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"targets": {"p": {"host": "h", "port": 1}}}, "lacks 'called_ae'"),
        ({"targets": {"p": {"type": "ftp"}}}, "unknown type 'ftp'"),
        ({"rules": [{"target": "nowhere"}]}, "unknown target(s) ['nowhere']"),
        ({"targets": TARGETS, "rules": [{"match": {}}]}, "names no target"),
        ({"targets": TARGETS, "rules": [{"target": "pacs", "match": {"colour": "red"}}]}, "colour"),
        (
            {"targets": TARGETS, "rules": [{"target": "pacs", "modality": "SM"}]},
            "unknown key(s) ['modality']; put modality under \"match\"",
        ),
        ({"targets": TARGETS, "rules": [{"target": "pacs", "colour": "red"}]}, "['colour']"),
        (
            {"targets": TARGETS, "rules": [{"target": "pacs", "match": {"sop_class": "Nope"}}]},
            "Nope",
        ),
        ({"retry": {"bsae": 1}}, "bsae"),
        ({"batch_size": 500}, "batch_size"),
        ({"retry": {"base": 0}}, "base"),
        ({"targets": {"p": {"host": "h", "port": 1, "called_ae": "X" * 17}}}, "not an AE title"),
        ({"targets": {"p": {"host": "h", "port": "x", "called_ae": "P"}}}, "port must be"),
    ],
)
def test_config_errors_name_the_offending_entry(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert message in str(err.value)


def test_the_documented_example_configuration_loads(tmp_path):
    readme = (Path(__file__).parents[2] / "hub" / "forward" / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "forward.toml").write_text(example)
    config = load_config(Settings.from_env({"TESSERA_VNA_TOKEN": "t"}, data_dir=tmp_path))
    assert set(config.targets) == {"pacs", "vna"}
    assert [r.name for r in config.rules] == ["telehealth-us", "slides", "ct-scanner"]
    assert config.targets["vna"].token == "t"
