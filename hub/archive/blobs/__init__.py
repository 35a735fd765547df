"""Where object bytes live: the ``BlobStore`` protocol and its implementations."""

from hub.archive.blobs.protocol import (
    CHUNK,
    BlobInfo,
    BlobMissing,
    BlobStore,
    Spool,
    StoreUnavailable,
)

__all__ = ["CHUNK", "BlobInfo", "BlobMissing", "BlobStore", "Spool", "StoreUnavailable"]
