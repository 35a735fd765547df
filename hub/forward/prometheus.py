"""The forwarding queue's figures in the Prometheus text exposition format (version 0.0.4).

Written by hand: prometheus_client keeps process-wide instruments, while these gauges are
computed per scrape from the index, the same on every node, and the format is a few lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from hub.forward.metrics import TargetMetrics
from hub.forward.states import STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (help, the figure of a target it shows)
GAUGES = {
    "tessera_forward_arrival_rate": (
        "Tasks queued per second over the window (lambda)",
        "arrival_rate",
    ),
    "tessera_forward_service_rate": (
        "Tasks finished per second while the target was busy (mu); NaN: never busy",
        "service_rate",
    ),
    "tessera_forward_utilisation": ("Arrival rate / service rate (rho)", "utilisation"),
    "tessera_forward_time_in_system_seconds": (
        "Mean time from queued to finished of the tasks that finished in the window",
        "time_in_system",
    ),
    "tessera_forward_predicted_time_in_system_seconds": (
        "M/M/1 time in system 1/(mu - lambda); +Inf when lambda >= mu",
        "predicted_time_in_system",
    ),
}


def exposition(
    measured: Iterable[TargetMetrics], counts: Mapping[str, Mapping[str, int]], window: float
) -> str:
    measured = list(measured)
    lines = _gauge("tessera_forward_window_seconds", "Length of the moving window", [({}, window)])
    for name, (help_text, field) in GAUGES.items():
        values = [({"target": m.target}, getattr(m.figures, field)) for m in measured]
        lines += _gauge(name, help_text, values)
    lines += _gauge(
        "tessera_forward_utilisation_warning",
        "1 while utilisation over the window is above the warning level",
        [({"target": m.target}, float(m.figures.warning)) for m in measured],
    )
    depth = [
        ({"target": m.target, "state": state}, counts.get(m.target, {}).get(state, 0))
        for m in measured
        for state in STATES
    ]
    lines += _gauge("tessera_forward_queue_depth", "Tasks of the target in each state", depth)
    return "\n".join(lines) + "\n"


def _gauge(
    name: str, help_text: str, values: list[tuple[dict[str, str], float | None]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in values:
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(
            f"{name}{{{label_text}}} {_number(value)}" if labels else f"{name} {_number(value)}"
        )
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | None) -> str:
    if isinstance(value, int):
        return str(value)
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
