"""A procedure step's statuses and the actions that move it between them (no imports: the
command line names the actions without loading the database layer)."""

SCHEDULED, STARTED, COMPLETED, CANCELLED = "SCHEDULED", "STARTED", "COMPLETED", "CANCELLED"
STATUSES = (SCHEDULED, STARTED, COMPLETED, CANCELLED)

# action -> (allowed current statuses, new status)
TRANSITIONS = {
    "start": ((SCHEDULED,), STARTED),
    "complete": ((STARTED,), COMPLETED),
    "cancel": ((SCHEDULED, STARTED), CANCELLED),
}
