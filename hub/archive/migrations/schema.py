"""Every table of the index, of every package, in one list: what the migrations manage.

Packages define their tables on the archive's ``metadata`` (``hub.archive.index``); this module
names each of them, so that what Alembic compares and migrates does not depend on which
modules happen to have been imported. A table defined on ``metadata`` but missing here, or
listed here but defined elsewhere, is an error at import.
"""

from __future__ import annotations

from sqlalchemy import MetaData, Table

from hub.archive import index
from hub.configstore import tables as config_tables
from hub.dose import tables as dose_tables
from hub.forward import tables as forward_tables
from hub.jobs import tables as jobs_tables
from hub.patients import tables as patients_tables
from hub.security import tables as security_tables
from hub.serve import tables as serve_tables
from hub.worklist import model as worklist_model

TABLES: tuple[Table, ...] = (
    index.patients,
    index.studies,
    index.series,
    index.instances,
    index.conflicts,
    patients_tables.patient_changes,
    security_tables.users,
    security_tables.tokens,
    security_tables.audit_log,
    security_tables.login_throttle,
    security_tables.ae_permissions,
    forward_tables.forward_tasks,
    jobs_tables.uploads,
    jobs_tables.jobs,
    worklist_model.worklist_items,
    dose_tables.dose_identities,
    dose_tables.dose_reports,
    dose_tables.dose_events,
    dose_tables.dose_estimates,
    serve_tables.nodes,
    serve_tables.leases,
    config_tables.config_entries,
    config_tables.config_scopes,
)

metadata: MetaData = index.metadata


def _check_registry() -> None:
    listed = {t.name for t in TABLES}
    defined = set(metadata.tables)
    if listed != defined or any(t.metadata is not metadata for t in TABLES):
        raise RuntimeError(
            "hub.archive.migrations.schema.TABLES and the index metadata disagree: "
            f"not listed {sorted(defined - listed)}, not on the metadata {sorted(listed - defined)}"
        )


_check_registry()


def compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type):
    """Alembic's type comparison, except that a declared ``String()`` must be unbounded.

    Alembic reads a type without a length as "any length", so ``VARCHAR(64)`` in the database
    would pass for ``String()`` and a column left bounded would go unnoticed.
    """
    declared = getattr(metadata_type, "length", False)
    if declared is None and getattr(inspected_type, "length", None) is not None:
        return True
    return None  # Alembic's own comparison
