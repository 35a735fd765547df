"""Code that runs inside the conversion worker process.

Progress goes back to the server through a multiprocessing queue handed over when the worker
process starts (queues cannot be passed as task arguments). Results come back as plain data:
exceptions from slide readers are not always picklable, so a failure is returned as a message.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from multiprocessing.queues import Queue
from pathlib import Path

PROGRESS_INTERVAL = 0.25  # seconds between progress messages of one job

_progress_queue: Queue | None = None


def init_worker(queue: Queue) -> None:
    global _progress_queue
    _progress_queue = queue


def convert(job_id: str, src: str, out_dir: str, ids: dict) -> dict:
    """Convert one vendor slide; returns {"paths": [...]} or {"error": "reason"}."""
    try:
        from wsi import ConversionError, ConvertOptions, SlideIds, convert_slide
    except ImportError as exc:  # the server cannot convert without the wsi package
        return {"error": f"slide conversion is not available: {exc}"}
    report = _throttled_reporter(job_id)
    report(0, 0)  # started: the job leaves the queue
    try:
        paths = convert_slide(
            Path(src), Path(out_dir), _slide_ids(SlideIds, ids), ConvertOptions(), progress=report
        )
    except ConversionError as exc:
        return {"error": str(exc) or type(exc).__name__}
    except MemoryError:
        return {"error": "conversion ran out of memory"}
    except Exception as exc:  # any reader failure must become a job error, not a dead worker
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"paths": [str(p) for p in paths]}


def _slide_ids(slide_ids_cls: type, ids: dict) -> object:
    """Build SlideIds from the form fields it knows; unknown keys are left out."""
    known = {f.name for f in dataclasses.fields(slide_ids_cls)}
    return slide_ids_cls(**{k: v for k, v in ids.items() if k in known})


def _throttled_reporter(job_id: str):
    last = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if _progress_queue is None or (now - last < PROGRESS_INTERVAL and 0 < done < total):
            return
        last = now
        _progress_queue.put((job_id, int(done), int(total)))

    return report
