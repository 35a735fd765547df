"""The states of a forward task (no imports: the command line offers them as choices without
loading the database layer)."""

from typing import Literal

TaskState = Literal["pending", "in_flight", "done", "dead", "cancelled"]
STATES: tuple[TaskState, ...] = ("pending", "in_flight", "done", "dead", "cancelled")
