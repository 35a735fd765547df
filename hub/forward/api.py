"""REST API of the forward queue: look at tasks and targets, retry and cancel tasks.

GET  /api/forward/tasks?state=&target=&sop=&limit=&offset=   forward.read.tasks
GET  /api/forward/tasks/{id}                                  forward.read.task
POST /api/forward/tasks/{id}/retry                            forward.admin.retry
POST /api/forward/tasks/{id}/cancel                           forward.admin.cancel
POST /api/forward/retry?target=                               forward.admin.retry.dead
POST /api/forward/studies/{study}?target=                     forward.admin.send
GET  /api/forward/targets                                     forward.read.targets
GET  /api/forward/metrics?window=                             forward.read.metrics
GET  /metrics?window=                                         admin.metrics (Prometheus)
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from hub.apispec import described
from hub.archive import NotFound
from hub.audited import audit_change
from hub.errors import Problem, problem
from hub.forward import prometheus
from hub.forward.keys import FORWARDER_KEY
from hub.forward.metrics import WARN_UTILISATION, TargetMetrics, per_target
from hub.forward.queue import RETRYABLE_STATES, Task, TaskNotFound, TaskStateError
from hub.forward.tables import STATES
from hub.forward.worker import Forwarder
from hub.requestdata import parse_int

MAX_LIMIT = 1000
MAX_ID = 2**63 - 1  # SQL BIGINT
WINDOW = (300, 10, 86400)  # seconds of the metrics' moving window: default, least, most


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/forward/tasks", list_tasks, name="forward.read.tasks")
    r.add_get("/api/forward/tasks/{id}", show_task, name="forward.read.task")
    r.add_post("/api/forward/tasks/{id}/retry", retry_task, name="forward.admin.retry")
    r.add_post("/api/forward/tasks/{id}/cancel", cancel_task, name="forward.admin.cancel")
    r.add_post("/api/forward/retry", retry_dead, name="forward.admin.retry.dead")
    r.add_post("/api/forward/studies/{study}", send_study, name="forward.admin.send")
    r.add_get("/api/forward/targets", list_targets, name="forward.read.targets")
    r.add_get("/api/forward/metrics", queue_metrics, name="forward.read.metrics")
    r.add_get("/metrics", prometheus_metrics, name="admin.metrics")


def _forwarder(request: web.Request) -> Forwarder:
    return request.app[FORWARDER_KEY]


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    return parse_int(raw, name, minimum=low, maximum=high)


def _task_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    # isdigit() alone takes "²", which int() refuses
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_ID:
        raise Problem(404, f"no forward task {raw}")
    return int(raw)


@described(
    "The forwarding queue, newest first, with the count of tasks in each state",
    query={
        "state": f"only tasks in this state ({', '.join(STATES)})",
        "target": "only tasks for this target",
        "sop": "only tasks of this SOP Instance UID",
        "limit": f"at most this many (1 to {MAX_LIMIT}; 100 by default)",
        "offset": "skip this many first",
    },
)
async def list_tasks(request: web.Request) -> web.Response:
    forwarder = _forwarder(request)
    try:
        tasks = await forwarder.queue.list(
            state=request.query.get("state") or None,
            target=request.query.get("target") or None,
            sop_uid=request.query.get("sop") or None,
            limit=_int_param(request, "limit", 100, 1, MAX_LIMIT),
            offset=_int_param(request, "offset", 0, 0, 2**31),
        )
    except ValueError as exc:
        return problem(400, str(exc))
    counts = await forwarder.queue.counts()
    return web.json_response({"tasks": [t.to_json() for t in tasks], "counts": counts})


@described("One forward task and its attempts", answers={404: "no such forward task"})
async def show_task(request: web.Request) -> web.Response:
    try:
        task = await _forwarder(request).queue.get(_task_id(request))
    except TaskNotFound as exc:
        return problem(404, str(exc))
    return web.json_response(task.to_json())


@described(
    "Try a task again now",
    answers={404: "no such forward task", 409: f"the task is not {' or '.join(RETRYABLE_STATES)}"},
)
async def retry_task(request: web.Request) -> web.Response:
    forwarder = _forwarder(request)
    return await _change(request, forwarder.queue.retry, "forward.retry")


@described(
    "Cancel a task that has not been sent",
    answers={404: "no such forward task", 409: "the task is no longer pending"},
)
async def cancel_task(request: web.Request) -> web.Response:
    return await _change(request, _forwarder(request).queue.cancel, "forward.cancel")


async def _change(
    request: web.Request, change: Callable[[int], Awaitable[Task]], action: str
) -> web.Response:
    try:
        task = await change(_task_id(request))
    except TaskNotFound as exc:
        return problem(404, str(exc))
    except TaskStateError as exc:
        return problem(409, str(exc))
    _forwarder(request).wake()
    await _audit(
        request,
        action,
        study=task.study_uid,
        detail={"task": task.id, "target": task.target, "sop": task.sop_uid},
    )
    return web.json_response(task.to_json())


@described(
    "Give every dead letter (of one target, or all) a fresh start",
    query={"target": "only this target's dead letters"},
)
async def retry_dead(request: web.Request) -> web.Response:
    forwarder = _forwarder(request)
    target = request.query.get("target") or None
    count = await forwarder.queue.retry_dead(target)
    forwarder.wake()
    await _audit(request, "forward.retry", detail={"dead_letters": count, "target": target})
    return web.json_response({"retried": count})


@described(
    "Queue every instance of a study for a target now, whatever the rules say",
    status=202,
    query={"target": "the target to send to (required)"},
    answers={404: "no such study"},
)
async def send_study(request: web.Request) -> web.Response:
    forwarder = _forwarder(request)
    target = request.query.get("target", "")
    config = await forwarder.source.current()
    if target not in config.targets:
        known = ", ".join(config.targets) or "none configured"
        return problem(400, f"unknown target {target!r} (targets: {known})")
    study = request.match_info["study"]
    try:
        refs = await forwarder.archive.instances(study)
    except NotFound as exc:
        return problem(404, str(exc))
    count = await forwarder.queue.send_instances(refs, target)
    forwarder.wake()
    await _audit(request, "forward.send", study=study, detail={"target": target, "count": count})
    return web.json_response({"queued": count, "target": target}, status=202)


async def _audit(
    request: web.Request, action: str, study: str | None = None, detail: dict | None = None
) -> None:
    engine = _forwarder(request).archive.engine
    await audit_change(request, engine, action, study=study, detail=detail)


@described(
    "The forwarding targets, their rules and queue counts, each with its version, and the "
    "configuration's revision"
)
async def list_targets(request: web.Request) -> web.Response:
    forwarder = _forwarder(request)
    return web.json_response(await forwarder.source.describe(await forwarder.queue.counts()))


WINDOW_QUERY = {
    "window": f"seconds of the moving window, ending now ({WINDOW[1]} to {WINDOW[2]}; "
    f"{WINDOW[0]} by default)"
}


async def _measure(request: web.Request) -> tuple[int, float, list[TargetMetrics]]:
    """The window asked for, its end (now) and the figures of every target (configured, or
    with tasks)."""
    window = _int_param(request, "window", *WINDOW)
    queue = _forwarder(request).queue
    until = queue.clock()
    stays = await queue.stays(until - window, until)
    names = sorted({*_forwarder(request).config.targets, *stays})
    loop = asyncio.get_running_loop()
    measured = await loop.run_in_executor(None, per_target, stays, names, until - window, until)
    return window, until, measured


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: it is null here, and the flags beside it say which null it is."""
    return value if value is not None and math.isfinite(value) else None


def _metrics_json(m: TargetMetrics, counts: dict[str, int]) -> dict:
    f = m.figures
    return {
        "target": m.target,
        "arrivals": f.arrivals,
        "completions": f.completions,
        "busy_seconds": f.busy_seconds,
        "arrival_rate": f.arrival_rate,
        "service_rate": f.service_rate,
        "utilisation": _finite(f.utilisation),
        "time_in_system": f.time_in_system,
        "predicted_time_in_system": _finite(f.predicted_time_in_system),
        "saturated": f.saturated,
        "warning": f.warning,
        "depth": {state: counts.get(state, 0) for state in STATES},
        "series": [{"at": s.at, "busy": s.busy, "depth": s.depth} for s in m.samples],
    }


@described(
    "Queue figures per target over a moving window: arrival rate (λ), service rate while busy "
    "(μ), utilisation ρ = λ/μ, mean time in system measured and as M/M/1 predicts "
    "(null and saturated when λ ≥ μ), a warning when ρ is above the warning level, and the busy "
    "fraction and queue depth step by step over the window",
    query=WINDOW_QUERY,
)
async def queue_metrics(request: web.Request) -> web.Response:
    window, until, measured = await _measure(request)
    counts = await _forwarder(request).queue.counts()
    return web.json_response(
        {
            "window": window,
            "until": until,
            "warn_utilisation": WARN_UTILISATION,
            "targets": [_metrics_json(m, counts.get(m.target, {})) for m in measured],
        }
    )


@described(
    "The forwarding queue's figures as Prometheus gauges (text exposition format)",
    produces="text/plain",
    query=WINDOW_QUERY,
)
async def prometheus_metrics(request: web.Request) -> web.Response:
    window, _, measured = await _measure(request)
    counts = await _forwarder(request).queue.counts()
    text = prometheus.exposition(measured, counts, window)
    return web.Response(text=text, headers={"Content-Type": prometheus.CONTENT_TYPE})
