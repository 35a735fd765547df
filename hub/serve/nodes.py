"""This node's identity in the registry (``hub.serve.tables.nodes``).

A node keeps one id for its life: the ``cluster.node_id`` setting, or else an id made at the
first start and kept in the data folder. So a restarted node knows its own claims (what it had in
flight before it stopped) from another node's.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

from hub.config import Settings

ID_FILE = "node-id"
MAX_LENGTH = 64


class NodeIdError(ValueError):
    pass


def node_id(settings: Settings) -> str:
    """The configured id, else the one kept in the data folder (made on first use)."""
    if settings.cluster.node_id:
        return _checked(settings.cluster.node_id, "the cluster.node_id setting")
    path = Path(settings.data_dir) / ID_FILE
    try:
        return _checked(path.read_text().strip(), str(path))
    except FileNotFoundError:
        pass
    made = f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(made + "\n")
    tmp.replace(path)
    return made


def _checked(value: str, where: str) -> str:
    if not value or len(value) > MAX_LENGTH or not value.isprintable() or value != value.strip():
        raise NodeIdError(f"{where}: a node id is 1 to {MAX_LENGTH} printable characters")
    return value
