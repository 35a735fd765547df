"""`tessera patients changes|revert`: the patient updates and merges from the patient
administration, and undoing one, as the admin page and ``/api/admin/patients`` do. A revert is
audited under the operator's login name. Building the parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.config import Settings
from hub.index_command import index_command

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def register(subparsers: Any) -> None:
    patients = subparsers.add_parser("patients", help="patient updates and merges (HL7 ADT)")
    commands = patients.add_subparsers(title="patients commands", required=True)
    listed = commands.add_parser("changes", help="the latest changes, newest first")
    listed.add_argument("--patient", help="only the changes of this patient ID")
    listed.add_argument("--json", action="store_true", help="print JSON")
    listed.set_defaults(func=index_command(cmd_changes))
    revert = commands.add_parser("revert", help="undo a change (the latest of its patient)")
    revert.add_argument("id", type=int, help="the change's number, as `changes` lists it")
    revert.set_defaults(func=index_command(cmd_revert))
    for command in (listed, revert):
        # Also accept --data after the command; SUPPRESS keeps a --data given before it.
        command.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="data folder")


async def cmd_changes(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    from hub.patients.changes import listed

    found = await listed(engine, args.patient)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for change in found:
        print(_line(change))
    if not found:
        print("no patient changes")
    return 0


def _line(change: dict) -> str:
    def key(k: dict) -> str:
        return f"{k['id']} ({k['issuer']})" if k["issuer"] else k["id"]

    what = (
        f"merge {key(change['prior'])} into {key(change['patient'])}"
        if change["kind"] == "merge"
        else f"update {key(change['patient'])}"
    )
    at = datetime.fromtimestamp(change["at"]).isoformat(" ", "seconds")
    state = f"reverted by {change['reverted_by']}" if change["reverted_at"] else "stands"
    touched = f"{change['studies']} studies, {change['steps']} steps"
    return f"{change['id']:>6}  {at}  {what}  ({touched}; {change['who']})  {state}"


async def cmd_revert(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    from hub.audited import audit_command, operator
    from hub.patients.changes import revert
    from hub.patients.model import ChangeConflict

    try:
        reverted = await revert(engine, args.id, operator())
    except (LookupError, ChangeConflict) as exc:
        print(exc.args[0], file=sys.stderr)
        return 1
    await audit_command(
        settings,
        engine,
        "patient.revert",
        patient=reverted.patient.patient_id,
        detail={"change": reverted.id, "kind": reverted.kind, "studies": reverted.studies},
    )
    print(f"change {reverted.id} ({reverted.kind} of {reverted.patient}) reverted")
    return 0
