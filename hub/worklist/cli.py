"""`tessera worklist add|list|show|start|complete|cancel`.

Building the parser imports nothing heavy; the database layer loads when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hub.config import Settings
from hub.worklist.states import STATUSES, TRANSITIONS

if TYPE_CHECKING:
    from hub.worklist.model import WorklistItem


def register(subparsers) -> None:
    parser = subparsers.add_parser("worklist", help="modality worklist: scheduled procedure steps")
    actions = parser.add_subparsers(title="worklist commands", dest="worklist_command")

    def sub(name: str, help_text: str, func) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text)
        # Also accepted after the action; SUPPRESS keeps a value given before it.
        p.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="data folder")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=func)
        return p

    add = sub("add", "schedule a procedure step", cmd_add)
    add.add_argument("--patient-name", required=True, help="DICOM PN, e.g. DOE^JANE")
    add.add_argument("--patient-id", required=True)
    add.add_argument("--modality", required=True, help="e.g. US, SM")
    add.add_argument("--birth-date", default="", help="YYYYMMDD or YYYY-MM-DD")
    add.add_argument("--sex", default="", choices=["", "M", "F", "O"])
    add.add_argument("--age", default="", help="DICOM age, e.g. 006M (default: from birth date)")
    add.add_argument("--weight-kg", type=float, default=None)
    add.add_argument("--size-m", type=float, default=None, help="height in metres")
    add.add_argument("--accession", default="")
    add.add_argument("--requested-procedure-id", default="")
    add.add_argument("--description", default="", help="requested procedure description")
    add.add_argument("--procedure-code", action="append", default=[], help="value^scheme^meaning")
    add.add_argument("--sps-id", default="")
    add.add_argument("--sps-description", default="")
    add.add_argument("--protocol-code", action="append", default=[], help="value^scheme^meaning")
    add.add_argument("--station-ae", default="")
    add.add_argument("--start", default="", help="ISO 8601 date-time (default: now)")
    add.add_argument("--performing-physician", default="")
    add.add_argument("--referring-physician", default="")
    add.add_argument(
        "--clinic", default="", help="clinic account the step is for (it sees it in its worklist)"
    )

    lst = sub("list", "list scheduled procedure steps", cmd_list)
    lst.add_argument("--status", default="", help="comma list, e.g. SCHEDULED,STARTED")
    lst.add_argument("--modality", default="")
    lst.add_argument("--station-ae", default="")
    lst.add_argument("--date", default="", help="DICOM date or range, e.g. 20261128-")
    lst.add_argument("--patient-name", default="", help="wildcards * and ?")

    sub("show", "show one item", cmd_show).add_argument("id", type=int)
    for action in TRANSITIONS:
        sub(action, f"{action} a procedure step", cmd_transition).add_argument("id", type=int)


async def _engine(args: argparse.Namespace):
    from hub.archive.index import create_schema, make_engine
    from hub.worklist import model  # noqa: F401 - registers worklist_items for create_schema

    settings = Settings.from_env(data_dir=getattr(args, "data", None))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    await create_schema(engine)
    return engine


def _run(args: argparse.Namespace, work) -> int:
    import asyncio

    from hub.archive.query import QueryError
    from hub.worklist.model import TransitionError, WorklistError

    async def main() -> int:
        engine = await _engine(args)
        try:
            return await work(engine)
        except (WorklistError, QueryError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except TransitionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        except KeyError:
            print(f"error: no worklist item {args.id}", file=sys.stderr)
            return 4
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _print(args: argparse.Namespace, items: list[WorklistItem]) -> None:
    if args.json:
        print(json.dumps([i.to_json() for i in items], indent=2))
        return
    for i in items:
        print(
            f"{i.id:>5}  {i.status:<9}  {i.start_date} {i.start_time[:4]}  {i.modality:<3}"
            f"  {i.station_ae or '-':<16}  {i.accession:<16}  {i.patient_id}  {i.patient_name}"
        )


def cmd_add(args: argparse.Namespace) -> int:
    from hub.worklist import model
    from hub.worklist.clinics import check_clinic

    new = model.NewItem(
        patient_name=args.patient_name,
        patient_id=args.patient_id,
        modality=args.modality,
        birth_date=args.birth_date,
        sex=args.sex,
        age=args.age,
        weight_kg=args.weight_kg,
        size_m=args.size_m,
        accession=args.accession,
        requested_procedure_id=args.requested_procedure_id,
        requested_procedure_description=args.description,
        requested_procedure_codes=args.procedure_code,
        sps_id=args.sps_id,
        sps_description=args.sps_description,
        protocol_codes=args.protocol_code,
        station_ae=args.station_ae,
        start=args.start,
        performing_physician=args.performing_physician,
        referring_physician=args.referring_physician,
        clinic=args.clinic,
    )

    async def work(engine) -> int:
        await check_clinic(engine, new.clinic)
        _print(args, [await model.create(engine, new)])
        return 0

    return _run(args, work)


def cmd_list(args: argparse.Namespace) -> int:
    from hub.worklist import model

    statuses = tuple(s.strip().upper() for s in args.status.split(",") if s.strip())
    flt = model.WorklistFilter(
        modality=args.modality,
        station_ae=args.station_ae,
        start_date=args.date,
        patient_name=args.patient_name,
        statuses=statuses,
    )

    async def work(engine) -> int:
        if set(statuses) - set(STATUSES):
            raise model.WorklistError(f"status must be among {', '.join(STATUSES)}")
        _print(args, await model.search(engine, flt))
        return 0

    return _run(args, work)


def cmd_show(args: argparse.Namespace) -> int:
    from hub.worklist import model

    async def work(engine) -> int:
        item = await model.get_item(engine, args.id)
        if item is None:
            raise KeyError(args.id)
        _print(args, [item])
        return 0

    return _run(args, work)


def cmd_transition(args: argparse.Namespace) -> int:
    from hub.worklist import model

    async def work(engine) -> int:
        _print(args, [await model.transition(engine, args.id, args.worklist_command)])
        return 0

    return _run(args, work)
