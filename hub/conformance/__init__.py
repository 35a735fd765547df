"""The DICOM conformance statement, built from the doors' own tables so that it cannot drift
from them: ``GET /api/conformance`` (JSON) and the ``/conformance`` page."""

from hub.conformance.statement import build_statement

__all__ = ["build_statement"]
