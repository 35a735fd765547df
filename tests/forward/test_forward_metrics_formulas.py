"""The queue formulas on stays written out by hand, and their Prometheus rendering."""

from __future__ import annotations

import math

import pytest

from hub.forward.metrics import (
    Stay,
    TargetMetrics,
    busy_seconds,
    depth_at,
    measure,
    mm1_time_in_system,
    per_target,
    series,
    utilisation,
)
from hub.forward.prometheus import exposition


def test_the_mm1_formulas() -> None:
    assert utilisation(2.0, 5.0) == pytest.approx(0.4)
    assert utilisation(0.0, None) == 0.0  # no traffic: idle, whatever μ is
    assert utilisation(1.0, 0.0) == math.inf  # busy without a single completion
    assert mm1_time_in_system(2.0, 5.0) == pytest.approx(1 / 3)
    assert mm1_time_in_system(5.0, 5.0) == math.inf  # λ ≥ μ: no steady state
    assert mm1_time_in_system(6.0, 5.0) == math.inf
    assert mm1_time_in_system(0.0, None) is None  # nothing known about the service


def test_busy_time_is_the_union_of_the_stays_within_the_window() -> None:
    stays = [
        Stay(1.0, 3.0),
        Stay(2.0, 4.0),  # overlaps the first: busy 1..4
        Stay(6.0, 7.0),
        Stay(-5.0, 0.5),  # began before the window
        Stay(9.0, None),  # still queued at the window's end (10)
    ]
    assert busy_seconds(stays, 0.0, 10.0) == pytest.approx(0.5 + 3.0 + 1.0 + 1.0)
    assert busy_seconds(stays, 2.5, 6.5) == pytest.approx(1.5 + 0.5)
    assert busy_seconds([], 0.0, 10.0) == 0.0


def test_figures_of_a_server_half_busy() -> None:
    # one arrival a second, each served in 0.5 s without waiting: λ 1/s, μ 2/s, ρ 0.5
    stays = [Stay(float(t), t + 0.5) for t in range(1, 11)]
    figures = measure(stays, 0.5, 10.5)
    assert figures.arrivals == 10 and figures.completions == 10
    assert figures.arrival_rate == pytest.approx(1.0)
    assert figures.busy_seconds == pytest.approx(5.0)
    assert figures.service_rate == pytest.approx(2.0)
    assert figures.utilisation == pytest.approx(0.5)
    assert figures.time_in_system == pytest.approx(0.5)
    assert figures.predicted_time_in_system == pytest.approx(1.0)  # 1 / (2 - 1)
    assert not figures.warning and not figures.saturated


def test_a_queue_that_builds_up_warns_and_has_no_prediction() -> None:
    # two arrivals a second, one served a second: the queue grows, the server never rests
    arrivals = [i * 0.5 for i in range(20)]
    stays, free = [], 0.0
    for at in arrivals:
        free = max(free, at) + 1.0
        stays.append(Stay(at, free if free <= 10.0 else None))
    figures = measure(stays, 0.0, 10.0)
    assert figures.arrival_rate == pytest.approx(1.9)  # the one at 0.0 is before (0, 10]
    assert figures.service_rate == pytest.approx(1.0)
    assert figures.utilisation == pytest.approx(1.9)
    assert figures.warning and figures.saturated
    assert figures.predicted_time_in_system == math.inf
    assert depth_at(stays, 9.99) == 20 - 9


def test_an_idle_target_has_nothing_to_measure() -> None:
    figures = measure([Stay(1.0, 2.0)], 10.0, 20.0)
    assert (figures.arrivals, figures.completions, figures.busy_seconds) == (0, 0, 0.0)
    assert figures.arrival_rate == 0.0 and figures.service_rate is None
    assert figures.utilisation == 0.0 and figures.time_in_system is None
    assert figures.predicted_time_in_system is None and not figures.warning
    with pytest.raises(ValueError, match="window"):
        measure([], 5.0, 5.0)


def test_the_series_covers_the_window_step_by_step() -> None:
    stays = [Stay(float(t), t + 0.5) for t in range(0, 11)]
    samples = series(stays, 0.0, 10.0, samples=5)
    assert [s.at for s in samples] == pytest.approx([2.0, 4.0, 6.0, 8.0, 10.0])
    assert [s.busy for s in samples] == pytest.approx([0.5] * 5)
    assert series([Stay(1.0, None)], 0.0, 2.0, samples=2)[1].depth == 1


def test_prometheus_text_has_a_gauge_per_figure_and_state() -> None:
    saturated = per_target({"pacs": [Stay(1.0, None)]}, ["pacs", 'odd"name'], 0.0, 10.0)
    assert isinstance(saturated[0], TargetMetrics)
    text = exposition(saturated, {"pacs": {"pending": 1}}, 10)
    lines = text.splitlines()
    assert "# TYPE tessera_forward_utilisation gauge" in lines
    assert 'tessera_forward_utilisation{target="pacs"} +Inf' in lines
    assert 'tessera_forward_predicted_time_in_system_seconds{target="pacs"} +Inf' in lines
    assert 'tessera_forward_service_rate{target="pacs"} 0.0' in lines
    assert 'tessera_forward_time_in_system_seconds{target="pacs"} NaN' in lines
    assert 'tessera_forward_utilisation_warning{target="pacs"} 1.0' in lines
    assert 'tessera_forward_queue_depth{target="pacs",state="pending"} 1' in lines
    assert 'tessera_forward_queue_depth{target="odd\\"name",state="done"} 0' in lines
    assert "tessera_forward_window_seconds 10" in lines
    assert text.endswith("\n")
