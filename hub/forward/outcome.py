"""What one delivery attempt came to, and which failures are worth retrying.

Retry: the receiver is unreachable, busy or out of resources (network errors, timeouts,
DIMSE 0xA7xx and 0x0110 processing failure, HTTP 5xx and 429). Everything else the receiver
refuses is permanent for that object and goes to the dead letters: it needs a person to fix
the data or the receiver's configuration, then a retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# untried: the attempt never reached this object (the association broke on an earlier one);
# it is due again at once and the attempt does not count.
Verdict = Literal["done", "retry", "dead", "untried"]


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    message: str = ""
    status: int | None = None  # DIMSE status or HTTP status, when the receiver answered

    @classmethod
    def done(cls, message: str = "", status: int | None = None) -> Outcome:
        return cls("done", message, status)

    @classmethod
    def retry(cls, message: str, status: int | None = None) -> Outcome:
        return cls("retry", message, status)

    @classmethod
    def untried(cls, message: str) -> Outcome:
        return cls("untried", message)

    @classmethod
    def dead(cls, message: str, status: int | None = None) -> Outcome:
        return cls("dead", message, status)


# PS3.7 Annex C and PS3.4 B.2.3 meanings, for messages a person can act on.
_DIMSE_MEANINGS = (
    (0xA700, 0xA7FF, "out of resources"),
    (0xA900, 0xA9FF, "data set does not match SOP class"),
    (0xC000, 0xCFFF, "cannot understand"),
    (0xB000, 0xB000, "coercion of data elements"),
    (0xB006, 0xB006, "elements discarded"),
    (0xB007, 0xB007, "data set does not match SOP class (warning)"),
    (0x0110, 0x0110, "processing failure"),
    (0x0111, 0x0111, "duplicate SOP instance"),
    (0x0117, 0x0117, "invalid SOP instance"),
    (0x0122, 0x0122, "SOP class not supported"),
    (0x0124, 0x0124, "not authorised"),
    (0x0210, 0x0210, "duplicate invocation"),
    (0x0211, 0x0211, "unrecognised operation"),
    (0x0212, 0x0212, "mistyped argument"),
)


def dimse_meaning(status: int) -> str:
    for low, high, meaning in _DIMSE_MEANINGS:
        if low <= status <= high:
            return meaning
    return "unknown status"


def from_dimse_status(status: int, comment: str = "") -> Outcome:
    detail = f"C-STORE status 0x{status:04X} ({dimse_meaning(status)})"
    if comment:
        detail += f": {comment}"
    if status == 0x0000:
        return Outcome.done(status=status)
    if 0xB000 <= status <= 0xBFFF:
        return Outcome.done(f"stored with warning, {detail}", status)
    if 0xA700 <= status <= 0xA7FF or status == 0x0110:
        return Outcome.retry(detail, status)
    return Outcome.dead(f"refused by the receiver, {detail}", status)


RETRY_HTTP = {408, 425, 429}


def from_http_status(status: int, body: str = "") -> Outcome:
    detail = f"HTTP {status}"
    if body:
        detail += f": {body[:300]}"
    if 200 <= status < 300:
        return Outcome.done(status=status)
    if status >= 500 or status in RETRY_HTTP:
        return Outcome.retry(detail, status)
    return Outcome.dead(f"refused by the receiver, {detail}", status)
