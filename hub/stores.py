"""The blob store a node's settings ask for, built by the composition root.

The archive core knows only the ``BlobStore`` protocol; which store, and whether it is
wrapped in encryption at rest, is decided here and handed to ``Archive.open``: the local
directory or ``ChunkCache(S3BlobStore)`` as configured (``blobs.configured``), inside
``EncryptedBlobStore`` when a store key is configured, so that S3 and the cache hold
ciphertext only.
"""

from __future__ import annotations

from hub.archive.blobs import BlobStore
from hub.archive.blobs.configured import plain_store
from hub.config import Settings


def open_store(settings: Settings) -> BlobStore:
    storage = settings.storage
    store: BlobStore = plain_store(settings)
    if storage.encryption_key_file or storage.encryption_key:
        from hub.security.at_rest import EncryptedBlobStore, load_store_key  # optional feature

        key = load_store_key(storage.encryption_key_file, storage.encryption_key)
        assert key is not None  # a key file is always read or created
        store = EncryptedBlobStore(store, key, tmp_dir=settings.tmp_dir)
    return store
