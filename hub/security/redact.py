"""Keep patient data out of server logs: a logging filter and an access log without queries."""

from __future__ import annotations

import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

_PHI_KEYS = (
    r"PatientName|PatientID|PatientBirthDate|PatientBirthName|PatientAddress|"
    r"PatientTelephoneNumbers|OtherPatientIDs|OtherPatientNames|IssuerOfPatientID|"
    r"PatientMotherBirthName|AccessionNumber|0010[0-9A-Fa-f]{4}|00080050"
)
_PATTERNS = [
    # query strings: QIDO searches carry names and IDs (?PatientName=DOE^JOHN)
    (re.compile(r"(/[\w./{}-]*)\?[^\s\"']+"), r"\1?<redacted>"),
    # key=value / key: value, as in messages, reprs and JSON ("PatientID": "123")
    (
        re.compile(rf"(\"?\b(?:{_PHI_KEYS})\b\"?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&)}}]+)"),
        r"\1<redacted>",
    ),
    # pydicom dataset reprs: (0010,0010) Patient's Name   PN: 'DOE^JOHN'
    (re.compile(r"(\(0010,[0-9A-Fa-f]{4}\)[^\n:]*:)[^\n]*"), r"\1 <redacted>"),
    (re.compile(r"(\(0008,0050\)[^\n:]*:)[^\n]*"), r"\1 <redacted>"),
    # DICOM JSON person names
    (
        re.compile(r"(\"(?:Alphabetic|Ideographic|Phonetic)\"\s*:\s*)\"[^\"]*\""),
        r"\1\"<redacted>\"",
    ),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """Rewrites each record's message with patient identifiers and query strings removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, ()
        return True


def install_log_redaction(*loggers: logging.Logger) -> RedactFilter:
    """Attach the filter to the handlers of the given loggers (default: root, aiohttp)."""
    flt = RedactFilter()
    targets = loggers or (logging.getLogger(), logging.getLogger("aiohttp.access"))
    for logger in targets:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactFilter) for f in handler.filters):
                handler.addFilter(flt)
    return flt


class SafeAccessLogger(AbstractAccessLogger):
    """Access log lines with the path only (never the query string) and who asked.

    Pass as ``access_log_class`` to ``web.AppRunner`` / ``web.run_app``.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        who = getattr(request.get("principal"), "user", "-")
        self.logger.info(
            '%s %s "%s %s HTTP/%d.%d" %d %s %.3fs',
            request.remote or "-",
            who,
            request.method,
            request.path,
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
        )
