"""The audit trail: chained and keyed, so edits, deletions and reordering are found."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from sqlalchemy import delete, select, update

from hub.archive import Source
from hub.archive.index import create_schema, make_engine
from hub.security import audit_trail
from hub.security.audit_trail import AuditLog, audit, head_path_for, verify
from hub.security.keys import audit_key
from hub.security.tables import audit_log


async def _fill(engine, count: int = 8) -> None:
    for n in range(count):
        await audit(
            engine,
            who=f"user{n}",
            role="clinic",
            action="instance.read",
            outcome="success",
            patient=f"PID{n}",
            study=f"1.2.3.{n}",
            source="127.0.0.1",
            detail={"n": n},
        )


async def _verdict(engine, tmp_path: Path):
    return await verify(engine, audit_key(tmp_path), head_path_for(tmp_path))


async def test_untouched_chain_verifies(audited, tmp_path: Path) -> None:
    await _fill(audited)
    verdict = await _verdict(audited, tmp_path)
    assert verdict.ok, verdict.problems
    assert verdict.records == 8 and verdict.head_checked


async def test_flipped_byte_is_found(audited, tmp_path: Path) -> None:
    await _fill(audited)
    async with audited.begin() as conn:
        await conn.execute(update(audit_log).where(audit_log.c.seq == 5).values(patient="PID5x"))
    verdict = await _verdict(audited, tmp_path)
    assert not verdict.ok
    assert any("record 5 does not match" in p for p in verdict.problems)


async def test_flipped_timestamp_or_outcome_is_found(audited, tmp_path: Path) -> None:
    await _fill(audited)
    async with audited.begin() as conn:
        row = (await conn.execute(select(audit_log).where(audit_log.c.seq == 2))).one()
        await conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(at=row.at + 1e-6))
        await conn.execute(update(audit_log).where(audit_log.c.seq == 7).values(outcome="denied"))
    problems = (await _verdict(audited, tmp_path)).problems
    assert any("record 2" in p for p in problems) and any("record 7" in p for p in problems)


async def test_deleted_record_is_found(audited, tmp_path: Path) -> None:
    await _fill(audited)
    async with audited.begin() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq == 4))
    problems = (await _verdict(audited, tmp_path)).problems
    assert "records 4..4 are missing" in problems
    assert any("record 5 does not match" in p for p in problems)


async def test_deleted_and_renumbered_record_is_found(audited, tmp_path: Path) -> None:
    await _fill(audited)
    async with audited.begin() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq == 4))
        for seq in range(5, 9):
            await conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(seq=seq - 1))
    problems = (await _verdict(audited, tmp_path)).problems
    assert any("record 4 does not match" in p for p in problems)
    assert "records 8..8 were cut off the end" in problems


async def test_cut_off_tail_is_found(audited, tmp_path: Path) -> None:
    await _fill(audited)
    async with audited.begin() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq >= 7))
    problems = (await _verdict(audited, tmp_path)).problems
    assert problems == ["records 7..8 were cut off the end"]


def _entries(count: int, who: str) -> list[dict]:
    return [
        {"at": 1.0 + n, "who": f"{who}{n}", "role": "clinic", "action": "x", "outcome": "success"}
        for n in range(count)
    ]


async def test_another_node_ahead_of_the_anchor_is_no_cut_off(audited, tmp_path: Path) -> None:
    await _fill(audited)  # this node's anchor: record 8
    other_node = AuditLog(audited, audit_key(tmp_path), tmp_path / "other" / "audit.head")
    await other_node.write(_entries(4, "elsewhere"))
    verdict = await _verdict(audited, tmp_path)
    assert verdict.ok, verdict.problems
    assert verdict.records == 12 and verdict.head_checked


async def test_a_rewritten_record_under_an_anchor_behind_the_end_is_found(
    audited, tmp_path: Path
) -> None:
    """Whoever holds the key can write a consistent chain, but not the record this node
    anchored, even when other nodes wrote on after it."""
    await _fill(audited)
    forger = AuditLog(audited, audit_key(tmp_path))
    await forger.write(_entries(4, "elsewhere"))
    async with audited.begin() as conn:
        await conn.execute(delete(audit_log).where(audit_log.c.seq >= 6))
    await forger.write(_entries(7, "forged"))
    problems = (await _verdict(audited, tmp_path)).problems
    assert problems == ["record 8 differs from the head anchor"]


async def test_a_node_with_another_key_is_told_at_start(audited, tmp_path: Path, caplog) -> None:
    await _fill(audited)
    stranger = AuditLog(audited, b"\x02" * 32)
    await stranger.start()
    await stranger.close()
    assert "record 8 was not signed with this node's audit key" in caplog.text
    caplog.clear()
    same = AuditLog(audited, audit_key(tmp_path))
    await same.start()
    await same.close()
    assert "not signed" not in caplog.text


async def test_swapped_pair_is_found(audited, tmp_path: Path) -> None:
    await _fill(audited)
    async with audited.begin() as conn:
        rows = await conn.execute(select(audit_log.c.who).where(audit_log.c.seq.in_([3, 4])))
        assert sorted(r.who for r in rows) == ["user2", "user3"]
        await conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(seq=-1))
        await conn.execute(update(audit_log).where(audit_log.c.seq == 4).values(seq=3))
        await conn.execute(update(audit_log).where(audit_log.c.seq == -1).values(seq=4))
    problems = (await _verdict(audited, tmp_path)).problems
    assert any("record 3 does not match" in p for p in problems)
    assert any("record 4 does not match" in p for p in problems)


async def test_chain_rebuilt_without_the_key_is_found(audited, tmp_path: Path) -> None:
    await _fill(audited)
    forger = AuditLog(audited, b"\x01" * 32)
    async with audited.begin() as conn:
        await conn.execute(delete(audit_log))
    await forger.write(
        [{"at": 1.0, "who": "nobody", "role": "admin", "action": "x", "outcome": "success"}]
    )
    verdict = await _verdict(audited, tmp_path)
    assert any("record 1 does not match" in p for p in verdict.problems)


async def test_batched_writer_loses_nothing_on_close(engine, tmp_path: Path) -> None:
    log = audit_trail.attach(engine, tmp_path)
    await log.start()
    await asyncio.gather(
        *(
            audit(engine, who=f"u{n}", role="integration", action="stow", outcome="success")
            for n in range(1500)
        )
    )
    await log.close()
    async with engine.connect() as conn:
        whos = [r.who for r in await conn.execute(select(audit_log).order_by(audit_log.c.seq))]
    assert sorted(whos) == sorted(f"u{n}" for n in range(1500))
    assert (await _verdict(engine, tmp_path)).ok


async def test_two_writers_keep_one_chain(tmp_path: Path) -> None:
    """Two processes appending to one database (two engines here) must not fork the chain."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'index.sqlite'}"
    first, second = make_engine(url), make_engine(url)
    await create_schema(first)
    key = audit_key(tmp_path)
    writers = [AuditLog(e, key, head_path_for(tmp_path)) for e in (first, second)]

    async def burst(log: AuditLog, name: str) -> None:
        for n in range(40):
            entry = {"at": float(n), "who": name, "role": "r", "action": "a", "outcome": "success"}
            await log.write([entry])

    await asyncio.gather(burst(writers[0], "one"), burst(writers[1], "two"))
    verdict = await verify(first, key, head_path_for(tmp_path))
    assert verdict.ok, verdict.problems
    assert verdict.records == 80
    await first.dispose()
    await second.dispose()


async def test_syslog_export_is_rfc5424(audited, tmp_path: Path) -> None:
    await audit(
        audited,
        who='eve "the" ]tester[',
        role="admin",
        action="user.disable",
        outcome="failure",
        detail="Zoë",
    )
    lines = [line async for line in audit_trail.export_syslog(audited, hostname="hub1")]
    assert len(lines) == 1
    pattern = (
        r"<84>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z hub1 tessera - user\.disable "
        r"\[audit@32473 seq=\"1\" who=\"eve \\\"the\\\" \\\]tester\[\" role=\"admin\" "
        r"outcome=\"8\" mac=\"[0-9a-f]{64}\"\] \ufeffZoë"
    )
    assert re.fullmatch(pattern, lines[0]), lines[0]


async def test_archive_stores_are_audited(tmp_path: Path, settings) -> None:
    from hub.archive import Archive

    archive = await Archive.open(settings)
    try:
        audit_trail.attach(archive.engine, settings.data_dir)
        archive.subscribe(audit_trail.archive_subscriber(archive.engine))
        path = Path(get_testdata_file("CT_small.dcm"))
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        result = await archive.ingest_file(
            path, source=Source(door="dimse", address="10.0.0.7", calling_ae="MODALITY1")
        )
        assert result.status == "stored"
        async with archive.engine.connect() as conn:
            row = (await conn.execute(select(audit_log))).one()
        assert row.action == "instance.stored" and row.outcome == "success"
        assert row.who == "MODALITY1" and row.role == "door:dimse"
        assert row.patient == ds.PatientID and row.study == ds.StudyInstanceUID
        assert row.source == "10.0.0.7"
        assert ds.SOPInstanceUID in row.detail
    finally:
        audit_trail.detach(archive.engine)
        await archive.close()


async def test_records_survive_a_database_that_refuses_them(engine, tmp_path: Path) -> None:
    """A real fault: the audit table is gone while the hub stops. The records are kept in a
    file and appended when the log starts again."""
    log = audit_trail.attach(engine, tmp_path)
    await log.start()
    await audit(engine, who="before", role="admin", action="a", outcome="success")
    await log.flush()
    async with engine.begin() as conn:
        await conn.run_sync(audit_log.drop)
    for n in range(3):
        await audit(engine, who=f"during{n}", role="admin", action="a", outcome="success")
    await log.close(grace=0.5)
    assert len(log.spill_path.read_text().splitlines()) == 3
    audit_trail.detach(engine)

    async with engine.begin() as conn:  # the database is back (restored from the backup)
        await conn.run_sync(audit_log.create)
    again = audit_trail.attach(engine, tmp_path)
    await again.start()
    await again.close()
    assert not again.spill_path.exists()
    async with engine.connect() as conn:
        whos = [r.who for r in await conn.execute(select(audit_log).order_by(audit_log.c.seq))]
    assert whos == ["during0", "during1", "during2"]


async def test_byte_flipped_in_the_database_file_is_found(tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite"
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    await create_schema(engine)
    audit_trail.attach(engine, tmp_path)
    await _fill(engine)
    audit_trail.detach(engine)
    await engine.dispose()  # the last connection checkpoints the WAL into the file

    raw = bytearray(db.read_bytes())  # noqa: ASYNC240
    # The detail, which no index holds a copy of (the patient is in ix_audit_patient too).
    where = raw.find(b'{"n": 6}')
    assert where > 0 and raw.find(b'{"n": 6}', where + 1) == -1
    raw[where + 6] ^= 0x01  # {"n": 6} -> {"n": 7}: a single bit, below SQL
    db.write_bytes(bytes(raw))  # noqa: ASYNC240

    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    try:
        problems = (await _verdict(engine, tmp_path)).problems
    finally:
        await engine.dispose()
    assert any("record 7 does not match" in p for p in problems), problems
