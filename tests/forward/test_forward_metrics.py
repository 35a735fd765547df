"""Queue figures against a real receiver with a known service time and a known arrival rate.

The peer (a pynetdicom SCP) takes SERVICE seconds over every C-STORE and records when each
association opened and closed and what it carried; the test ingests one new instance every
``interval`` seconds and records when the hub acknowledged each. The true figures come from
those records only: the rate the test really sent at, the time the peer was really busy per
instance, and acknowledgement -> association closed as the time in system. The hub's figures,
from its queue rows over the same window, must be within 10% of them. The window is asked for
while the load still runs, so it covers a steady state only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pydicom
import pytest
from forward_peers import SlowSCP, forward_config
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from hub.archive import Source

pytestmark = pytest.mark.peers

SERVICE = 0.2  # seconds the peer takes per C-STORE
WARMUP = 2.0  # seconds of load before the measured window
WINDOW = 15  # seconds
TOLERANCE = 0.10


@dataclass
class Truth:
    arrival_rate: float
    service_rate: float
    time_in_system: float

    @property
    def utilisation(self) -> float:
        return self.arrival_rate / self.service_rate


@pytest.fixture
def peer():
    scp = SlowSCP(SERVICE)
    scp.start()
    yield scp
    scp.stop()


def instances(folder: Path, count: int) -> list[Path]:
    """``count`` distinct CT instances (each a new SOP Instance UID, so each is queued)."""
    folder.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    paths = []
    for i in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        paths.append(folder / f"{i}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


async def offered_load(hub, files: list[Path], interval: float) -> tuple[dict, dict[str, float]]:
    """Ingest one file every ``interval`` s (on a fixed schedule, so a slow ingest does not
    shift the next); after WARMUP + WINDOW s ask the hub for the last WINDOW s, then let the
    load finish. Returns the hub's figures and SOP Instance UID -> when the hub acknowledged."""
    acknowledged: dict[str, float] = {}
    start = time.time()

    async def send() -> None:
        for i, path in enumerate(files):
            await asyncio.sleep(max(0.0, start + i * interval - time.time()))
            result = await hub.archive.ingest_file(path, source=Source(door="import"))
            assert result.status == "stored", result
            acknowledged[result.sop_instance_uid] = time.time()

    sender = asyncio.create_task(send())
    await asyncio.sleep(start + WARMUP + WINDOW - time.time())
    url = f"{hub.url}/api/forward/metrics?window={WINDOW}"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    await sender
    await hub.wait_settled()
    return body, acknowledged


def truth(peer: SlowSCP, acknowledged: dict[str, float], since: float, until: float) -> Truth:
    """The figures over (since, until] from the test's and the peer's own records. The hub
    serves the target like one first-come-first-served server: each instance is in service
    from when it arrived or the one before it left, whichever is later, until the association
    that carried it closed. (The peer's own connection is shorter: it opens only once the
    hub has set the association up.)"""
    # Arrivals per second of the window: under a busy CPU the ingests fall behind their
    # schedule and catch up, so the span between the first and the last is no measure.
    sent = [t for t in acknowledged.values() if since < t <= until]
    arrival_rate = len(sent) / (until - since)
    departed = {sop: a.closed for a in peer.associations for sop in a.sops}
    busy, in_system, previous = 0.0, [], 0.0
    for sop, arrived in sorted(acknowledged.items(), key=lambda item: item[1]):
        left = departed[sop]
        busy += max(0.0, min(left, until) - max(arrived, previous, since))
        if since < left <= until:
            in_system.append(left - arrived)
        previous = left
    return Truth(arrival_rate, len(in_system) / busy, sum(in_system) / len(in_system))


def close(measured: float, true: float, counted: int | None = None) -> bool:
    """Within TOLERANCE; a figure ``counted`` from that many arrivals in the window may also
    be one arrival off: the hub stamps an arrival when it commits, the test when it is
    acknowledged just after, and one can fall on either side of the window's edge."""
    tolerance = TOLERANCE if counted is None else max(TOLERANCE, 1 / max(1, counted))
    return abs(measured - true) <= tolerance * true


async def service_time(hub, peer: SlowSCP, folder: Path) -> float:
    """What one instance on its own costs the hub and the peer on this machine now, from the
    acknowledgement to its association closed (the longest of three)."""
    took = []
    for path in instances(folder, 3):
        result = await hub.archive.ingest_file(path, source=Source(door="import"))
        acknowledged = time.time()
        await hub.wait_settled()
        (closed,) = [a.closed for a in peer.associations if result.sop_instance_uid in a.sops]
        took.append(closed - acknowledged)
    return max(took)


async def measured_run(
    hub_factory, peer, tmp_path: Path, interval: float | None = None, load: float = 0.0
) -> tuple[dict, Truth]:
    """Offer one instance every ``interval`` s or, given a ``load``, as often as makes that
    utilisation of the target as this machine serves it now (under a busy CPU each delivery
    costs more than the peer's SERVICE)."""
    # One instance per association, as the M/M/1 model has it: with batches, the completions
    # of a whole batch are stamped together, and one batch falling on either side of the
    # window's edge would move the counts by more than the tolerance.
    config = forward_config({"slow": peer.target()}, [{"target": "slow"}], batch_size=1)
    hub = await hub_factory(config)
    if interval is None:
        interval = await service_time(hub, peer, tmp_path / "calibration") / load
    files = instances(tmp_path / "instances", int((WARMUP + WINDOW) / interval) + 4)
    body, acknowledged = await offered_load(hub, files, interval)
    (figures,) = body["targets"]
    true = truth(peer, acknowledged, body["until"] - body["window"], body["until"])
    report = f"hub: {figures}\ntrue: {true} utilisation {true.utilisation:.3f}"
    counted = round(true.arrival_rate * body["window"])
    assert close(figures["arrival_rate"], true.arrival_rate, counted), report
    assert close(figures["service_rate"], true.service_rate), report
    assert close(figures["utilisation"], true.utilisation, counted), report
    assert close(figures["time_in_system"], true.time_in_system), report
    assert 1 / true.service_rate >= SERVICE, report  # the peer alone takes that long
    return figures, true


async def test_half_loaded_target_measured_without_warning(hub_factory, peer, tmp_path):
    figures, true = await measured_run(hub_factory, peer, tmp_path, load=0.3)

    assert true.utilisation < 0.7
    assert figures["warning"] is False and figures["saturated"] is False
    expected = 1 / (figures["service_rate"] - figures["arrival_rate"])
    assert figures["predicted_time_in_system"] == pytest.approx(expected)
    busy = [s["busy"] for s in figures["series"]]
    assert len(busy) == 30 and all(0 <= b <= 1 for b in busy)
    assert sum(busy) / len(busy) == pytest.approx(figures["busy_seconds"] / WINDOW)


async def test_busy_target_warns(hub_factory, peer, tmp_path):
    figures, true = await measured_run(hub_factory, peer, tmp_path, interval=1.15 * SERVICE)

    # μ ≤ 1 / SERVICE, whatever else the delivery costs: ρ ≥ 1 / 1.15
    assert true.utilisation > 0.85
    assert figures["warning"] is True
    if figures["saturated"]:  # λ ≥ μ: M/M/1 has no finite time to predict
        assert figures["predicted_time_in_system"] is None
    else:
        assert figures["predicted_time_in_system"] > figures["time_in_system"]
