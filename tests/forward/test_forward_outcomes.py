"""Which receiver answers are retried and which become dead letters (the policy table)."""

from __future__ import annotations

import pytest

from hub.forward.config import RetryPolicy
from hub.forward.outcome import from_dimse_status, from_http_status


@pytest.mark.parametrize(
    ("status", "verdict", "words"),
    [
        (0x0000, "done", ""),
        (0xB000, "done", "coercion"),
        (0xB007, "done", "warning"),
        (0xA700, "retry", "out of resources"),
        (0xA7FF, "retry", "out of resources"),
        (0x0110, "retry", "processing failure"),
        (0xA900, "dead", "does not match SOP class"),
        (0xC000, "dead", "cannot understand"),
        (0xC122, "dead", "cannot understand"),
        (0x0122, "dead", "SOP class not supported"),
        (0x0111, "dead", "duplicate SOP instance"),
        (0x0124, "dead", "not authorised"),
        (0xFE00, "dead", "unknown status"),
    ],
)
def test_dimse_statuses(status, verdict, words):
    outcome = from_dimse_status(status, "why")
    assert outcome.verdict == verdict
    assert outcome.status == status
    assert words in outcome.message
    if verdict != "done" or status:
        assert f"0x{status:04X}" in outcome.message and "why" in outcome.message


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "done"),
        (202, "done"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (504, "retry"),
        (429, "retry"),
        (408, "retry"),
        (400, "dead"),
        (401, "dead"),
        (403, "dead"),
        (404, "dead"),
        (409, "dead"),
        (413, "dead"),
        (415, "dead"),
    ],
)
def test_http_statuses(status, verdict):
    outcome = from_http_status(status, "body text")
    assert outcome.verdict == verdict
    if verdict != "done":
        assert f"HTTP {status}" in outcome.message and "body text" in outcome.message


def test_backoff_grows_by_the_multiplier_up_to_the_cap():
    policy = RetryPolicy(base=0.2, multiplier=3, max_delay=5, max_attempts=4)
    assert [policy.delay(n) for n in range(1, 6)] == pytest.approx([0.2, 0.6, 1.8, 5, 5])
