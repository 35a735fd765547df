"""What a snapshot names, and the blob list a backup records.

The list has one line per blob, ``name size stored-sha256``, in restore order: the blobs of
the newest studies first, which is what a radiology department needs back first.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from hub.archive.migrations import schema
from hub.backup.manifest import BlobRef


@dataclass(frozen=True)
class Named:
    sha256: str
    sop_uids: tuple[str, ...]
    study_uid: str


@dataclass(frozen=True)
class SnapshotFacts:
    named: list[Named]  # newest studies first, one entry per blob
    rows: dict[str, int]
    audit_head: dict | None


NEWEST_FIRST = """
SELECT i.sha256, i.sop_uid, st.study_uid
FROM instances i JOIN series s ON i.series_fk = s.id JOIN studies st ON s.study_fk = st.id
ORDER BY st.study_date DESC, st.id DESC, i.received_at DESC, i.id
"""


def read_snapshot(path: Path) -> SnapshotFacts:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        by_blob: dict[str, list[str]] = {}
        study_of: dict[str, str] = {}
        for sha, sop_uid, study_uid in conn.execute(NEWEST_FIRST):
            by_blob.setdefault(sha, []).append(sop_uid)
            study_of.setdefault(sha, study_uid)
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        rows = {
            t.name: conn.execute(f'SELECT count(*) FROM "{t.name}"').fetchone()[0]
            for t in schema.TABLES
            if t.name in tables
        }
        head = conn.execute("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return SnapshotFacts(
        [Named(sha, tuple(uids), study_of[sha]) for sha, uids in by_blob.items()],
        rows,
        {"seq": head[0], "mac": head[1]} if head else None,
    )


def format_list(refs: list[BlobRef]) -> bytes:
    return "".join(f"{r.sha256} {r.size} {r.stored_sha256}\n" for r in refs).encode()


def parse_list(data: bytes) -> list[BlobRef]:
    refs = []
    for n, line in enumerate(data.decode().splitlines(), 1):
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError(f"line {n} of the blob list is malformed")
        refs.append(BlobRef(parts[0], int(parts[1]), parts[2]))
    return refs
