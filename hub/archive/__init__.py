"""The archive core: one ingest path, a content-addressed blob store and an SQL index."""

from hub.archive.archive import Archive
from hub.archive.errors import IngestError, NotFound
from hub.archive.model import Indexed, IngestResult, InstanceRef, Source
from hub.archive.scope import ReadScope

__all__ = [
    "Archive",
    "IngestError",
    "Indexed",
    "IngestResult",
    "InstanceRef",
    "NotFound",
    "ReadScope",
    "Source",
]
