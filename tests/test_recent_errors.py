"""The ring of recent errors keeps the last records at ERROR or above, newest first."""

from __future__ import annotations

import logging

from hub.recent_errors import RecentErrors


def test_the_ring_keeps_the_last_errors_only():
    ring = RecentErrors(kept=3)
    logger = logging.getLogger("hub.tests.ring")
    logger.addHandler(ring)
    try:
        assert ring.records() == []
        logger.warning("not an error")
        for n in range(5):
            logger.error("failure %d", n)
        logger.critical("the worst")
    finally:
        logger.removeHandler(ring)
    kept = ring.records()
    assert [r.message for r in kept] == ["the worst", "failure 4", "failure 3"]
    assert [r.level for r in kept] == ["CRITICAL", "ERROR", "ERROR"]
    assert {r.logger for r in kept} == {"hub.tests.ring"}
