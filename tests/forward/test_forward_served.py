"""A rule changed while `tessera serve --workers 2` runs routes the next object, whichever of
the two processes took the request, without a restart."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from forward_peers import StoreSCP, forward_config
from hubtest import HubProcess, bearer_for, free_port
from pydicom import dcmread
from pydicom.data import get_testdata_file

pytestmark = pytest.mark.peers

CT = Path(get_testdata_file("CT_small.dcm"))
MR = Path(get_testdata_file("MR_small.dcm"))


@pytest.fixture
def served(tmp_path: Path, storescp_factory, database_url):
    """The hub on the test's index (PostgreSQL where the suite runs on it), with one target."""
    pacs: StoreSCP = storescp_factory()
    pacs.start()
    extra = {"forward": forward_config({"pacs": pacs.target()}, [])}
    data = tmp_path / "hub"
    hub = HubProcess(data, free_port(), "--workers", "2", env={"TESSERA_EXTRA": json.dumps(extra)})
    threading.Thread(target=hub.proc.stdout.read, daemon=True).start()  # keep it flowing
    try:
        yield hub, pacs, bearer_for(data, "ops", "admin")
    finally:
        hub.stop()


def _put_rule(hub: HubProcess, headers: dict, modality: str) -> None:
    body = {"targets": ["pacs"], "match": {"modality": [modality]}}
    with requests.Session() as fresh:  # a new connection: either process may take it
        answer = fresh.put(
            f"{hub.url}/api/forward/rules/by-modality", json=body, headers=headers, timeout=60
        )
    assert answer.status_code == 200, answer.text


def _store(hub: HubProcess, headers: dict, path: Path, **changes: str) -> str:
    ds = dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    DICOMwebClient(f"{hub.url}/dicomweb", headers=headers).store_instances([ds])
    return ds.SOPInstanceUID


def _arrived(pacs: StoreSCP, sop_uid: str, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sop_uid in pacs.received():
            return True
        time.sleep(0.2)
    return False


def test_a_rule_changed_at_run_time_routes_the_next_object(served) -> None:
    hub, pacs, admin = served
    _put_rule(hub, admin, "MR")
    mr = _store(hub, admin, MR)
    assert _arrived(pacs, mr)

    _put_rule(hub, admin, "CT")
    second_mr = _store(hub, admin, MR, SOPInstanceUID="1.2.826.0.1.3680043.8.498.1001")
    ct = _store(hub, admin, CT)
    assert _arrived(pacs, ct)
    # Stored before the CT and no longer matched: the CT went out, so the MR was passed over.
    assert second_mr not in pacs.received()
    with requests.Session() as fresh:
        queued = fresh.get(f"{hub.url}/api/forward/tasks", headers=admin, timeout=60).json()
    assert second_mr not in json.dumps(queued)
