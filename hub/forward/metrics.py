"""Queue figures of each forwarding target, computed from the queue's own rows.

A target is one server: at most one batch of it is in flight across the nodes, and the worker
takes the next batch as soon as one ends. So the target is busy exactly while at least one of
its tasks is in the system (queued at ``created_at``, left at ``finished_at``), and every
figure follows from those two timestamps, the same on every node:

- λ, arrivals per second: tasks queued in the window / the window's length;
- μ, service rate: tasks that left (done or dead) in the window / the time the target was busy;
- ρ = λ / μ, the utilisation;
- W, the mean time in system (queued -> finished) of the tasks that left in the window, against
  the M/M/1 prediction 1 / (μ - λ), which is infinite when λ ≥ μ (the queue grows without bound);
- a warning when ρ over the window is above ``WARN_UTILISATION``: the window is a moving
  average, so a burst shorter than the window that leaves the average below does not warn.

A task given a fresh start (retry) counts from when it was first queued; cancelled tasks were
never offered to the target and are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

WARN_UTILISATION = 0.8
SAMPLES = 30  # points of the time series over one window


@dataclass(frozen=True)
class Stay:
    """One task's stay in the system; ``finished_at`` None: it is still there."""

    created_at: float
    finished_at: float | None


@dataclass(frozen=True)
class Figures:
    since: float
    until: float
    arrivals: int
    completions: int
    busy_seconds: float
    arrival_rate: float  # λ
    service_rate: float | None  # μ; None: never busy in the window, nothing to measure
    utilisation: float | None  # ρ; math.inf when busy without a completion
    time_in_system: float | None  # measured W; None: nothing left in the window
    predicted_time_in_system: float | None  # M/M/1; math.inf when λ ≥ μ

    @property
    def saturated(self) -> bool:
        """λ ≥ μ: M/M/1 has no steady state, the queue grows."""
        return self.predicted_time_in_system == math.inf

    @property
    def warning(self) -> bool:
        return self.utilisation is not None and self.utilisation > WARN_UTILISATION


@dataclass(frozen=True)
class Sample:
    at: float
    busy: float  # the fraction of the step ending at ``at`` the target was busy
    depth: int  # tasks in the system at ``at``


def utilisation(arrival_rate: float, service_rate: float | None) -> float | None:
    if arrival_rate == 0:
        return 0.0
    if service_rate is None:
        return None
    return arrival_rate / service_rate if service_rate > 0 else math.inf


def mm1_time_in_system(arrival_rate: float, service_rate: float | None) -> float | None:
    """W = 1 / (μ - λ); infinite when λ ≥ μ, None when μ is unknown."""
    if service_rate is None:
        return None
    if arrival_rate >= service_rate:
        return math.inf
    return 1.0 / (service_rate - arrival_rate)


def busy_seconds(stays: Iterable[Stay], since: float, until: float) -> float:
    """How long within [since, until] at least one task was in the system (the union of the
    stays, clipped to the window)."""
    intervals = sorted(
        (max(s.created_at, since), min(_left(s, until), until))
        for s in stays
        if s.created_at < until and _left(s, until) > since
    )
    total, end = 0.0, since
    for start, stop in intervals:
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _left(stay: Stay, until: float) -> float:
    return until if stay.finished_at is None else stay.finished_at


def measure(stays: Sequence[Stay], since: float, until: float) -> Figures:
    """The figures of one target over the window (since, until]."""
    if until <= since:
        raise ValueError("the window must end after it starts")
    arrivals = sum(1 for s in stays if since < s.created_at <= until)
    times = [
        s.finished_at - s.created_at
        for s in stays
        if s.finished_at is not None and since < s.finished_at <= until
    ]
    busy = busy_seconds(stays, since, until)
    arrival_rate = arrivals / (until - since)
    service_rate = len(times) / busy if busy > 0 else None
    return Figures(
        since=since,
        until=until,
        arrivals=arrivals,
        completions=len(times),
        busy_seconds=busy,
        arrival_rate=arrival_rate,
        service_rate=service_rate,
        utilisation=utilisation(arrival_rate, service_rate),
        time_in_system=sum(times) / len(times) if times else None,
        predicted_time_in_system=mm1_time_in_system(arrival_rate, service_rate),
    )


def depth_at(stays: Iterable[Stay], at: float) -> int:
    return sum(1 for s in stays if s.created_at <= at < _left(s, math.inf))


def series(
    stays: Sequence[Stay], since: float, until: float, samples: int = SAMPLES
) -> list[Sample]:
    """Utilisation and depth over the window, step by step. A step is too short for λ / μ
    (one arrival and no completion would make it infinite), so its utilisation is the
    fraction of it the target was busy, which is what ρ estimates for a stable queue."""
    step = (until - since) / samples
    points = []
    for i in range(1, samples + 1):
        end = since + i * step
        busy = busy_seconds(stays, end - step, end) / step
        points.append(Sample(end, busy, depth_at(stays, end)))
    return points


@dataclass(frozen=True)
class TargetMetrics:
    target: str
    figures: Figures
    samples: list[Sample]


def per_target(
    stays: Mapping[str, Sequence[Stay]], targets: Iterable[str], since: float, until: float
) -> list[TargetMetrics]:
    """The figures and time series of each of ``targets`` (CPU work: run it off the loop)."""
    return [
        TargetMetrics(
            name,
            measure(stays.get(name, ()), since, until),
            series(stays.get(name, ()), since, until),
        )
        for name in targets
    ]
