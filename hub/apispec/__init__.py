"""The REST API's description: each JSON route under /api says what it does, what it takes and
what it answers, and ``/api/openapi.json`` serves the OpenAPI 3.1 document built from that and
from the router table, so the description cannot drift from the routes."""

from hub.apispec.describe import Operation, described, operation_of

__all__ = ["Operation", "described", "operation_of"]
