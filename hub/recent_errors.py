"""The last log records at ERROR or above, kept in memory for the administration page.

One bounded ring per process, on the root logger: what a node logged when something went wrong,
without reading its log files. It holds the record's time, logger and message (with the
exception's last line when there was one), each clipped, so that it stays small.
"""

from __future__ import annotations

import logging
import traceback
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

KEPT = 50
MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class ErrorRecord:
    time: str  # ISO 8601, UTC
    level: str
    logger: str
    message: str


class RecentErrors(logging.Handler):
    def __init__(self, kept: int = KEPT) -> None:
        super().__init__(logging.ERROR)
        self._ring: deque[ErrorRecord] = deque(maxlen=kept)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                last = traceback.format_exception_only(record.exc_info[1])[-1].strip()
                message = f"{message}: {last}"
            at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            self._ring.append(
                ErrorRecord(at, record.levelname, record.name, message[:MESSAGE_CHARS])
            )
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)

    def records(self) -> list[ErrorRecord]:
        """The kept records, newest first."""
        assert self.lock is not None  # made by Handler.__init__; emit holds it too
        with self.lock:
            return list(reversed(self._ring))


_installed: RecentErrors | None = None


def install() -> RecentErrors:
    """The process's ring, on the root logger (installed once, however often this is called)."""
    global _installed
    if _installed is None:
        _installed = RecentErrors()
        logging.getLogger().addHandler(_installed)
    return _installed


def recent() -> list[ErrorRecord]:
    """The process's kept records, newest first; none before ``install``."""
    return _installed.records() if _installed is not None else []
