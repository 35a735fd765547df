"""The SQL index: patient, study, series and instance rows, frame tables and metadata.

SQLAlchemy Core over an async engine: SQLite (WAL) by default, PostgreSQL with the same code.
Other packages (worklist, forwarding, security, jobs) add their tables to ``metadata``; every
table is listed in ``hub.archive.migrations.schema``, and the schema changes by migrations.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = MetaData()

# Text columns hold what senders put in their objects, and senders exceed the standard's value
# lengths (a 70-character description, a date written 1997.04.24): unbounded, so that PostgreSQL
# stores them as SQLite does rather than refusing the object.

# A patient is its PatientID within IssuerOfPatientID; an ID sent without an issuer means
# something only to its sender, so such patients are kept apart per sender (``namespace``: the
# owner of the sending account's objects, "" for a sender that reads the whole archive).
patients = Table(
    "patients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("namespace", String(), nullable=False, default=""),
    Column("patient_id", String(), nullable=False, default=""),
    Column("issuer", String(), nullable=False, default=""),
    Column("patient_name", String(), nullable=False, default=""),
    Column("name_norm", String(), nullable=False, default=""),
    Column("birth_date", String(), nullable=False, default=""),
    Column("sex", String(), nullable=False, default=""),
    Column("attrs", Text, nullable=False, default="{}"),
    # Demographics the hospital's patient administration corrected after the objects were
    # stored (DICOM JSON of patient attributes, "" for none): reads present them over what the
    # objects say (``hub.archive.corrected``), the objects themselves stay as received.
    Column("corrected", Text, nullable=False, default=""),
    # The patient this one was merged into (its studies moved there; objects still arriving
    # under this ID are filed there too), None while it stands on its own.
    Column("merged_into", Integer, nullable=True),
    UniqueConstraint("namespace", "patient_id", "issuer", name="uq_patient"),
)
Index("ix_patient_name_norm", patients.c.name_norm)

# A study keeps the patient attributes its first object gave (matching columns here, returned
# attributes in ``attrs``): two senders naming one patient each see their own study's values.
studies = Table(
    "studies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", String(), nullable=False, unique=True),
    Column("patient_fk", ForeignKey("patients.id"), nullable=False),
    Column("patient_name", String(), nullable=False, default=""),
    Column("patient_name_norm", String(), nullable=False, default=""),
    Column("patient_birth_date", String(), nullable=False, default=""),
    Column("patient_sex", String(), nullable=False, default=""),
    Column("study_date", String(), nullable=False, default=""),
    Column("study_time", String(), nullable=False, default=""),
    Column("study_dt", String(), nullable=False, default=""),
    Column("accession", String(), nullable=False, default=""),
    Column("study_id", String(), nullable=False, default=""),
    Column("description", String(), nullable=False, default=""),
    Column("referring", String(), nullable=False, default=""),
    Column("referring_norm", String(), nullable=False, default=""),
    Column("modalities", String(), nullable=False, default=""),
    Column("num_series", Integer, nullable=False, default=0),
    Column("num_instances", Integer, nullable=False, default=0),
    Column("attrs", Text, nullable=False, default="{}"),
    Column("updated_at", Float, nullable=False, default=0.0),
)
for _c in (
    "patient_fk",
    "patient_name_norm",
    "patient_birth_date",
    "study_date",
    "accession",
    "study_id",
    "referring_norm",
    "modalities",
):
    Index(f"ix_studies_{_c}", studies.c[_c])

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("series_uid", String(), nullable=False, unique=True),
    Column("study_fk", ForeignKey("studies.id"), nullable=False),
    Column("modality", String(), nullable=False, default=""),
    Column("series_number", Integer, nullable=True),
    Column("description", String(), nullable=False, default=""),
    Column("pps_start_date", String(), nullable=False, default=""),
    Column("pps_start_time", String(), nullable=False, default=""),
    Column("first_time", String(), nullable=False, default=""),
    Column("num_instances", Integer, nullable=False, default=0),
    Column("attrs", Text, nullable=False, default="{}"),
)
for _c in ("study_fk", "modality", "series_number"):
    Index(f"ix_series_{_c}", series.c[_c])

instances = Table(
    "instances",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sop_uid", String(), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("is_current", Boolean, nullable=False, default=True),
    Column("series_fk", ForeignKey("series.id"), nullable=False),
    Column("sop_class_uid", String(), nullable=False),
    Column("instance_number", Integer, nullable=True),
    Column("sort_time", String(), nullable=False, default=""),
    Column("transfer_syntax", String(), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("number_of_frames", Integer, nullable=False, default=1),
    Column("rows", Integer, nullable=True),
    Column("columns", Integer, nullable=True),
    Column("image_type", String(), nullable=False, default=""),
    Column("total_rows", Integer, nullable=True),
    Column("total_columns", Integer, nullable=True),
    Column("pixel_spacing", String(), nullable=False, default=""),
    Column("container_id", String(), nullable=False, default=""),
    Column("attrs", Text, nullable=False, default="{}"),
    # The patient, study and series attributes of this object: what a caller who may read only
    # part of a study is shown at those levels.
    Column("shared", Text, nullable=False, default="{}"),
    Column("metadata", Text, nullable=False),
    Column("frames", LargeBinary, nullable=True),
    Column("bulk", Text, nullable=False, default="{}"),
    Column("received_at", Float, nullable=False),
    Column("door", String(), nullable=False, default=""),
    Column("actor", String(), nullable=True),
)
Index("ix_instances_sop", instances.c.sop_uid, instances.c.is_current)
Index("ix_instances_series", instances.c.series_fk)
Index("ix_instances_sha", instances.c.sha256)
Index("ix_instances_sop_class", instances.c.sop_class_uid)
Index("ix_instances_container", instances.c.container_id)

# A study whose instances disagree on the patient: the first patient is kept and the
# refused instance is recorded here for an administrator to resolve.
conflicts = Table(
    "conflicts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_uid", String(), nullable=False),
    Column("sop_uid", String(), nullable=False),
    Column("kept_patient_id", String(), nullable=False),
    Column("offered_patient_id", String(), nullable=False),
    Column("door", String(), nullable=False),
    Column("at", Float, nullable=False),
)


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10)


async def create_schema(engine: AsyncEngine) -> None:
    """Create a new index at the current revision; refuse an older one (``SchemaError``)."""
    from hub.archive.migrations.runner import prepare

    await prepare(engine, "create")
