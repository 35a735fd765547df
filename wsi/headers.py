"""Part-10 headers (everything before the frames) of one conversion's instances.

pydicom is the slowest import of a conversion (~0.17 s) and only the headers need it. A caller
that runs a single thread (the command line) forks a helper process first thing, which loads
pydicom while this process loads the slide readers and opens the slide, then builds each header
on request; a threaded host (the hub's executors) builds them in-process, since forking a
threaded process is unsafe.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from wsi.metadata import SlideDatasets
    from wsi.options import SlideIds
    from wsi.sources.model import SlideInfo


class Headers:
    """``header(transfer_syntax, **instance)`` -> bytes, with the arguments of
    SlideDatasets.instance; every instance shares one study, series and frame of reference."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local: _Builder | None = None
        self._conn: Connection | None = None
        self._pid = 0
        if threading.active_count() == 1 and hasattr(os, "fork"):
            self._fork()
        else:
            self._local = _Builder()

    def _fork(self) -> None:
        from multiprocessing.connection import Pipe

        ours, theirs = Pipe()
        pid = os.fork()
        if pid == 0:  # the helper: never returns
            ours.close()
            _serve(theirs)
        theirs.close()
        self._conn, self._pid = ours, pid

    def bind(self, slide: SlideInfo, ids: SlideIds, fallback_mpp: float) -> None:
        self._call("bind", slide, ids, fallback_mpp)

    def header(self, transfer_syntax: str, **instance: Any) -> bytes:
        return self._call("header", transfer_syntax, instance)

    def _call(self, what: str, *args: Any) -> Any:
        with self._lock:
            if self._local is not None:
                return getattr(self._local, what)(*args)
            assert self._conn is not None
            try:
                self._conn.send((what, args))
                ok, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise RuntimeError(f"the DICOM header process ended: {exc}") from exc
            if not ok:
                raise RuntimeError(value)
            return value

    def close(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(OSError):  # already gone
            self._conn.send(("stop", ()))
        self._conn.close()
        self._conn = None
        with contextlib.suppress(ChildProcessError):  # a host's SIGCHLD handler may reap it first
            os.waitpid(self._pid, 0)


class _Builder:
    """Loads pydicom on the first header, not before: in-process, encoding is under way by then."""

    def __init__(self) -> None:
        self._slide: tuple[SlideInfo, SlideIds, float] | None = None
        self._datasets: SlideDatasets | None = None

    def bind(self, slide: SlideInfo, ids: SlideIds, fallback_mpp: float) -> None:
        self._slide = (slide, ids, fallback_mpp)

    def header(self, transfer_syntax: str, instance: dict[str, Any]) -> bytes:
        from wsi.metadata import SlideDatasets, header_bytes
        from wsi.spacing import level0_spacing

        if self._datasets is None:
            assert self._slide is not None, "bind() first"
            slide, ids, fallback_mpp = self._slide
            self._datasets = SlideDatasets(slide, ids, level0_spacing(slide, fallback_mpp))
        return header_bytes(self._datasets.instance(**instance), transfer_syntax)


# Optional packages pydicom tries to import at start-up, for its test-data downloads and pixel
# codecs. Headers need neither; declining them takes ~0.1 s off the helper's start.
_NOT_NEEDED = ("requests", "tqdm", "pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls", "gdcm")


def _serve(conn: Connection) -> None:
    status = 1
    try:
        for name in _NOT_NEEDED:
            sys.modules.setdefault(name, None)  # None: "import name" raises ImportError
        import wsi.metadata  # noqa: F401 - the point of this process: load pydicom now

        builder = _Builder()
        while True:
            what, args = conn.recv()
            if what == "stop":
                status = 0
                break
            try:
                conn.send((True, getattr(builder, what)(*args)))
            except Exception as exc:
                conn.send((False, f"{type(exc).__name__}: {exc}"))
    except BaseException:  # noqa: S110 - the parent's end closed, or an interrupt: just leave
        pass
    finally:
        os._exit(status)  # no atexit handlers or buffers of the parent's run twice
