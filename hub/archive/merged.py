"""Patients merged into others (``patients.merged_into``): where an object that still names a
merged patient is filed.

After a merge the prior patient's studies belong to the surviving patient. Objects that keep
arriving under the prior ID (a modality's late series, a scanner's queue) are filed with the
survivor: a new study goes under it, and a study that moved is not a conflict.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.archive.index import patients

# A chain longer than this is a loop left by a fault, not a history of merges.
MAX_CHAIN = 64


async def surviving(conn: AsyncConnection, patient_fk: int) -> tuple[int, str]:
    """The patient ``patient_fk`` ends at through its merges, and that patient's correction."""
    for _ in range(MAX_CHAIN):
        row = (
            await conn.execute(
                select(patients.c.merged_into, patients.c.corrected).where(
                    patients.c.id == patient_fk
                )
            )
        ).one()
        if row.merged_into is None:
            return patient_fk, row.corrected
        patient_fk = row.merged_into
    raise RuntimeError(f"patient {patient_fk}: merges form a loop")


async def named(conn: AsyncConnection, namespace: str, patient_id: str, issuer: str) -> int | None:
    """The patient row of this ID, if the index has one."""
    return (
        await conn.execute(
            select(patients.c.id).where(
                patients.c.namespace == namespace,
                patients.c.patient_id == patient_id,
                patients.c.issuer == issuer,
            )
        )
    ).scalar()


async def merged_into(
    conn: AsyncConnection, namespace: str, key: tuple[str, str], patient_fk: int
) -> bool:
    """Whether the patient ``key`` (ID, issuer) names was merged, at one or more removes,
    into ``patient_fk``."""
    prior = await named(conn, namespace, *key)
    if prior is None or prior == patient_fk:
        return False
    return (await surviving(conn, prior))[0] == patient_fk
