"""Encryption at rest: AES-256-GCM over fixed-size chunks, so any byte range is readable alone.

Layout of an encrypted blob::

    header (32 bytes): magic "TSRAES1\\0" | chunk size u32 | plaintext size u64 | key id (8) | 0 (4)
    then per chunk:    nonce (12) | ciphertext (chunk size, the last one shorter) | tag (16)

Each chunk has a fresh random nonce and is authenticated together with the blob's name (the
sha256 of its plaintext), its index and whether it is the last, so chunks cannot be swapped,
moved to another blob, or cut off. Reading one frame decrypts only the chunks it spans.
Blobs written before encryption was switched on (no magic) are still read as they are.

The plaintext sits in the temp directory while an object is being ingested (the archive
hashes and parses it there); only what ``commit`` moves into the store is encrypted.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.archive.store import CHUNK, BlobStore
from hub.security.keys import load_or_create, parse_key

MAGIC = b"TSRAES1\x00"
HEADER = struct.Struct(">8sIQ8s4x")
NONCE, TAG = 12, 16
DEFAULT_CHUNK = 64 * 1024


class BlobIntegrityError(OSError):
    """An encrypted blob failed authentication: wrong key, or the file was altered."""


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"tessera-store-key-id" + key).digest()[:8]


class EncryptedBlobStore(BlobStore):
    """A ``BlobStore`` whose files are encrypted; names and sizes are those of the plaintext."""

    def __init__(
        self,
        root: Path,
        tmp_dir: Path,
        key: bytes | None = None,
        *,
        key_file: Path | None = None,
        open_files: int = 128,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        super().__init__(root, tmp_dir, open_files)
        if key is None:
            key = load_store_key(key_file)
        if key is None or len(key) != 32:
            raise ValueError("AES-256 needs a 32-byte key")
        self._aead = AESGCM(key)
        self._key_id = key_id(key)
        self.chunk_size = chunk_size
        self._headers: OrderedDict[str, tuple[int, int] | None] = OrderedDict()

    # -- writes -----------------------------------------------------------------------------
    def commit(self, temp: Path, sha256: str) -> bool:
        if self.claim_existing(sha256):
            temp.unlink(missing_ok=True)
            return False
        fd, sealed = self.new_temp()
        try:
            with open(temp, "rb") as src, os.fdopen(fd, "wb") as dst:
                self._encrypt(src, dst, sha256, os.fstat(src.fileno()).st_size)
            stored = super().commit(sealed, sha256)
        except BaseException:
            sealed.unlink(missing_ok=True)
            raise
        temp.unlink(missing_ok=True)
        return stored

    def _encrypt(self, src, dst, sha256: str, size: int) -> None:
        dst.write(HEADER.pack(MAGIC, self.chunk_size, size, self._key_id))
        count = self._chunk_count(size, self.chunk_size)
        for index in range(count):
            plain = src.read(self.chunk_size)
            nonce = os.urandom(NONCE)
            aad = self._aad(sha256, index, index == count - 1)
            dst.write(nonce + self._aead.encrypt(nonce, plain, aad))

    # -- reads ------------------------------------------------------------------------------
    def pread(self, sha256: str, offset: int, length: int) -> bytes:
        header = self._header(sha256)
        if header is None:
            return super().pread(sha256, offset, length)
        chunk, size = header
        end = min(offset + length, size)
        if offset >= end:
            return b""
        first, last = offset // chunk, (end - 1) // chunk
        plain = self._decrypt_span(sha256, header, first, last)
        start = offset - first * chunk
        return plain[start : start + (end - offset)]

    def iter_chunks(self, sha256: str, chunk: int = CHUNK) -> Iterator[bytes]:
        header = self._header(sha256)
        if header is None:
            yield from super().iter_chunks(sha256, chunk)
            return
        per_read = max(1, chunk // header[0])
        count = self._chunk_count(header[1], header[0])
        for first in range(0, count, per_read):
            block = self._decrypt_span(sha256, header, first, min(first + per_read, count) - 1)
            if block:
                yield block

    def read(self, sha256: str) -> bytes:
        return b"".join(self.iter_chunks(sha256))

    @contextmanager
    def plain_path(self, sha256: str) -> Iterator[Path]:
        """Decrypted into a temp file for the duration of the block, then removed."""
        fd, temp = self.new_temp()
        try:
            with os.fdopen(fd, "wb") as f:
                for block in self.iter_chunks(sha256):
                    f.write(block)
            yield temp
        finally:
            temp.unlink(missing_ok=True)

    def size(self, sha256: str) -> int:
        header = self._header(sha256)
        return super().size(sha256) if header is None else header[1]

    def delete(self, sha256: str) -> None:
        self._headers.pop(sha256, None)
        super().delete(sha256)

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _chunk_count(size: int, chunk: int) -> int:
        return max(1, -(-size // chunk))  # an empty blob still has one (empty) sealed chunk

    @staticmethod
    def _aad(sha256: str, index: int, last: bool) -> bytes:
        return sha256.encode() + struct.pack(">QB", index, last)

    def _header(self, sha256: str) -> tuple[int, int] | None:
        """(chunk size, plaintext size), or None for a blob stored unencrypted."""
        with self._lock:
            if sha256 in self._headers:
                self._headers.move_to_end(sha256)
                return self._headers[sha256]
        raw = os.pread(self._fd(sha256), HEADER.size, 0)
        if len(raw) < HEADER.size or raw[:8] != MAGIC:
            header = None
        else:
            _, chunk, size, kid = HEADER.unpack(raw)
            if kid != self._key_id:
                raise BlobIntegrityError(f"blob {sha256} was encrypted with another key")
            header = (chunk, size)
        with self._lock:
            self._headers[sha256] = header
            if len(self._headers) > 4096:
                self._headers.popitem(last=False)
        return header

    def _decrypt_span(self, sha256: str, header: tuple[int, int], first: int, last: int) -> bytes:
        chunk, size = header
        record = NONCE + chunk + TAG
        count = self._chunk_count(size, chunk)
        start = HEADER.size + first * record
        raw = os.pread(self._fd(sha256), (last - first + 1) * record, start)
        out = []
        for n, index in enumerate(range(first, last + 1)):
            piece = raw[n * record : (n + 1) * record]
            if len(piece) < NONCE + TAG:
                raise BlobIntegrityError(f"blob {sha256} is cut short before chunk {index}")
            try:
                out.append(
                    self._aead.decrypt(
                        piece[:NONCE], piece[NONCE:], self._aad(sha256, index, index == count - 1)
                    )
                )
            except InvalidTag:
                raise BlobIntegrityError(
                    f"blob {sha256} chunk {index} failed authentication"
                ) from None
        return b"".join(out)


def load_store_key(key_file: Path | str | None, given: str | None = None) -> bytes | None:
    """The store key: ``given`` (TESSERA_STORE_KEY), else the key file (created on first use);
    None: off.

    Losing the key file loses every encrypted object: back it up apart from the data.
    """
    if given:
        return parse_key(given, what="TESSERA_STORE_KEY")
    if key_file is None:
        return None
    return load_or_create(Path(key_file), what="store key")
