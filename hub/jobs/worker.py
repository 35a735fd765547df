"""Code that runs inside the conversion worker process.

Progress, and each instance as soon as the conversion has written it, go back to the server
through a multiprocessing queue handed over when the worker process starts (queues cannot be
passed as task arguments). Results come back as plain data:
exceptions from slide readers are not always picklable, so a failure is returned as a message.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from multiprocessing.queues import Queue
from pathlib import Path

PROGRESS_INTERVAL = 0.25  # seconds between progress messages of one job
INSTANCE = "instance"  # first item of an instance message: (INSTANCE, job id, path)

_progress_queue: Queue | None = None


def init_worker(queue: Queue) -> None:
    global _progress_queue
    _progress_queue = queue


def convert(job_id: str, src: str, out_dir: str, ids: dict) -> dict:
    """Convert one vendor slide; returns {"paths": [...], "frames_done": n, "frames_total": n,
    "warnings": [...]} or {"error": "reason", "handed_over": [...]}. The warnings are the
    assumptions the output states (ImageComments): assumed pixel spacing, shifted signed samples,
    the plane chosen; handed_over, the instances written before a failure (the server keeps them).

    The result carries the final figures because progress messages travel another channel and
    may reach the server after the result does."""
    try:
        from wsi import ConversionError, ConvertOptions, SlideIds, convert_slide
    except ImportError as exc:  # the server cannot convert without the wsi package
        return {"error": f"slide conversion is not available: {exc}"}
    report = _Reporter(job_id)
    report(0, 0)  # started: the job leaves the queue
    warnings: list[str] = []
    try:
        paths = convert_slide(
            Path(src),
            Path(out_dir),
            _slide_ids(SlideIds, ids),
            ConvertOptions(progressive=True),
            progress=report,
            warn=warnings.append,
            on_instance=report.instance,
        )
    except ConversionError as exc:
        return {"error": str(exc) or type(exc).__name__, "handed_over": report.handed_over}
    except MemoryError:
        return {"error": "conversion ran out of memory", "handed_over": report.handed_over}
    except Exception as exc:  # any reader failure must become a job error, not a dead worker
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}", "handed_over": report.handed_over}
    return {
        "paths": [str(p) for p in paths],
        "frames_done": report.done,
        "frames_total": report.total,
        "warnings": warnings,
    }


def _slide_ids(slide_ids_cls: type, ids: dict) -> object:
    """Build SlideIds from the form fields it knows; unknown keys are left out."""
    known = {f.name for f in dataclasses.fields(slide_ids_cls)}
    return slide_ids_cls(**{k: v for k, v in ids.items() if k in known})


class _Reporter:
    """The conversion's progress callback: sends at most one message per PROGRESS_INTERVAL (and
    the first and last), and keeps the latest figures for the result."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.done = self.total = 0
        self.handed_over: list[str] = []  # in order; the result repeats what the queue carried
        self._sent_at = 0.0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)
        now = time.monotonic()
        if _progress_queue is None or (
            now - self._sent_at < PROGRESS_INTERVAL and 0 < done < total
        ):
            return
        self._sent_at = now
        _progress_queue.put((self.job_id, self.done, self.total))

    def instance(self, instance) -> None:
        """An instance is in the output folder: the server ingests it now."""
        self.handed_over.append(str(instance.path))
        if _progress_queue is not None:
            _progress_queue.put((INSTANCE, self.job_id, str(instance.path)))
