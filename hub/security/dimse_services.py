"""The DIMSE services the allow-list grants, one column each (a module of its own: the command
line offers them as choices without loading the database layer)."""

SERVICES = ("store", "find", "move", "get", "worklist")
