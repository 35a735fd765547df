"""Where object bytes live: the ``BlobStore`` protocol and its implementations."""

from hub.archive.blobs.protocol import (
    CHUNK,
    BlobInfo,
    BlobIntegrityError,
    BlobMissing,
    BlobStore,
    Cached,
    Parking,
    Spool,
    StoreUnavailable,
)

__all__ = [
    "CHUNK",
    "BlobInfo",
    "BlobIntegrityError",
    "BlobMissing",
    "BlobStore",
    "Cached",
    "Parking",
    "Spool",
    "StoreUnavailable",
]
