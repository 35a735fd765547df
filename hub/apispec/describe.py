"""What a handler declares about itself: ``@described(...)`` on the function the router calls."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

Handler = TypeVar("Handler", bound=Callable[..., Any])
ATTRIBUTE = "__api_operation__"


@dataclass(frozen=True)
class Operation:
    """One operation: ``summary`` is a line; ``body`` and ``returns`` are request and response
    models (dataclasses or msgspec structs); ``query`` names each query parameter with its
    meaning; ``answers`` lists the other statuses the handler gives, with their meaning."""

    summary: str
    body: type | None = None
    returns: type | None = None
    status: int = 200
    produces: str = "application/json"
    query: Mapping[str, str] = field(default_factory=dict)
    answers: Mapping[int, str] = field(default_factory=dict)


def described(
    summary: str,
    *,
    body: type | None = None,
    returns: type | None = None,
    status: int = 200,
    produces: str = "application/json",
    query: Mapping[str, str] | None = None,
    answers: Mapping[int, str] | None = None,
) -> Callable[[Handler], Handler]:
    operation = Operation(
        summary, body, returns, status, produces, dict(query or {}), dict(answers or {})
    )

    def mark(handler: Handler) -> Handler:
        setattr(handler, ATTRIBUTE, operation)
        return handler

    return mark


def operation_of(handler: object) -> Operation | None:
    """The description of a handler, looking through ``functools.wraps`` wrappers."""
    while handler is not None:
        found = getattr(handler, ATTRIBUTE, None)
        if found is not None:
            return found
        handler = getattr(handler, "__wrapped__", None)
    return None
