"""The hl7 settings section: off by default, environment overrides, unknown keys named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.config import Hl7Settings, Settings, SettingsError


def test_off_by_default_and_set_from_the_environment() -> None:
    assert Settings.from_env({}).hl7.port is None
    s = Settings.from_env(
        {
            "TESSERA_HL7_PORT": "2575",
            "TESSERA_HL7_HOST": "0.0.0.0",
            "TESSERA_HL7_MAX_MESSAGE_BYTES": "4096",
            "TESSERA_HL7_TLS_CERT": "/etc/tessera/hl7.crt",
            "TESSERA_HL7_TLS_KEY": "/etc/tessera/hl7.key",
        }
    )
    assert s.hl7 == Hl7Settings(
        port=2575,
        host="0.0.0.0",
        max_message_bytes=4096,
        tls_cert=Path("/etc/tessera/hl7.crt"),
        tls_key=Path("/etc/tessera/hl7.key"),
    )
    extra = json.dumps({"hl7": {"port": 2576, "idle_seconds": 30}})
    assert Settings.from_env({"TESSERA_EXTRA": extra}).hl7.idle_seconds == 30
    assert Settings.from_json(s.to_json()).hl7 == s.hl7  # as a reader process gets it


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"TESSERA_EXTRA": json.dumps({"hl7": {"prot": 2575}})}, "TESSERA_EXTRA hl7.prot"),
        ({"TESSERA_HL7_PROT": "2575"}, "TESSERA_HL7_PROT"),
        ({"TESSERA_HL7_PORT": "mllp"}, "TESSERA_HL7_PORT"),
        ({"TESSERA_HL7_TLS_CERT": "/c.pem"}, "TESSERA_EXTRA hl7"),
        ({"TESSERA_HL7_PORT": "70000"}, "TESSERA_EXTRA hl7"),
    ],
)
def test_bad_settings_name_their_key(environ: dict, key: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    assert caught.value.key == key
