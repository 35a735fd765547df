"""`tessera user ...`, `tessera audit ...` and `tessera ae ...` commands.

Building the parser imports nothing heavy (the hub builds it for every command, and for
``--help``): the database, password hashing and audit modules load when a command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hub.config import Settings
from hub.security.dimse_services import SERVICES
from hub.security.policy import ALL_PERMISSIONS, ROLES

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def register(subparsers) -> None:
    _register_user(subparsers)
    _register_audit(subparsers)
    _register_ae(subparsers)


def _register_user(subparsers) -> None:
    user = subparsers.add_parser("user", help="manage users and their API tokens")
    sub = user.add_subparsers(title="user commands", required=True)

    add = sub.add_parser("add", help="create a user", parents=[_common()])
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=sorted(ROLES))
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.add_argument("--no-password", action="store_true", help="service account: API tokens only")
    add.set_defaults(func=_run(_user_add))

    lst = sub.add_parser("list", help="list users", parents=[_common()])
    lst.set_defaults(func=_run(_user_list))

    dis = sub.add_parser("disable", help="disable a user (its tokens stop working)",
                         parents=[_common()])  # fmt: skip
    dis.add_argument("username")
    dis.add_argument("--enable", action="store_true", help="enable again instead")
    dis.set_defaults(func=_run(_user_disable), enable=False)

    ena = sub.add_parser("enable", help="enable a disabled user", parents=[_common()])
    ena.add_argument("username")
    ena.set_defaults(func=_run(_user_disable), enable=True)

    role = sub.add_parser("role", help="give a user another role", parents=[_common()])
    role.add_argument("username")
    role.add_argument("role", choices=sorted(ROLES))
    role.set_defaults(func=_run(_user_role))

    pw = sub.add_parser("password", help="set a user's password", parents=[_common()])
    pw.add_argument("username")
    given = pw.add_mutually_exclusive_group()
    given.add_argument("--password-stdin", action="store_true")
    given.add_argument("--generate", action="store_true",
                       help="reset to a generated one-time password, printed once")  # fmt: skip
    pw.set_defaults(func=_run(_user_password))

    tok = sub.add_parser("token", help="issue, list or revoke API tokens", parents=[_common()])
    tok.add_argument("username", nargs="?", help="issue a token for this user")
    tok.add_argument("--scope", action="append", choices=sorted(ALL_PERMISSIONS),
                     help="restrict the token (repeatable); default: all the role has")  # fmt: skip
    tok.add_argument("--days", type=float, default=30.0, help="lifetime (0: no expiry)")
    tok.add_argument("--label", default="")
    tok.add_argument("--list", action="store_true", help="list tokens (of username, if given)")
    tok.add_argument("--revoke", type=int, metavar="ID", help="revoke the token with this id")
    tok.set_defaults(func=_run(_user_token))


def _register_audit(subparsers) -> None:
    audit = subparsers.add_parser("audit", help="check or export the audit trail")
    sub = audit.add_subparsers(title="audit commands", required=True)
    ver = sub.add_parser("verify", help="check the audit chain", parents=[_common()])
    ver.set_defaults(func=_run(_audit_verify))
    exp = sub.add_parser("export", help="print RFC 5424 syslog lines", parents=[_common()])
    exp.add_argument("--since", type=int, default=0, metavar="SEQ", help="after this record")
    exp.add_argument("--out", default=None, help="write to this file instead of stdout")
    exp.set_defaults(func=_run(_audit_export))
    find = sub.add_parser(
        "search",
        help="search the audit trail, newest first",
        description="Print the matching records, newest first, one line each. Times are "
        "ISO 8601 (UTC unless an offset is given) or seconds since 1970.",
        parents=[_common()],
    )
    find.add_argument("--who", help="the user (or system) that acted")
    find.add_argument("--patient", help="the patient ID the record names")
    find.add_argument("--study", help="the Study Instance UID the record names")
    find.add_argument("--action", help="the action; ending in a dot, every action under it")
    find.add_argument("--outcome", choices=("success", "failure", "denied"))
    find.add_argument("--since", metavar="TIME", help="records at or after this time")
    find.add_argument("--until", metavar="TIME", help="records before this time")
    find.add_argument("--before", metavar="SEQ", help="records before this sequence number")
    find.add_argument("--limit", metavar="N", help="at most this many (default 50, up to 500)")
    find.add_argument("--json", action="store_true", help="one JSON object per record")
    find.set_defaults(func=_run(_audit_search))


AE_HELP = """\
The DIMSE port denies by default: a calling AE title that is not on this list may associate
and C-ECHO, and nothing else (every C-STORE, C-FIND, C-MOVE, C-GET and worklist query gets
status 0x0124 "Refused: Not Authorized"). Each allowed AE acts as a principal: an existing
account (--as USER: a clinic's AE then reads and owns exactly what the clinic's web account
does) or an AE-only principal with a role (--role). That role's read scope limits its queries
and retrievals as it limits DICOMweb: a clinic AE finds, moves and gets only its own objects
and sees only its own worklist items; a specialist AE only ultrasound.
"""


def _register_ae(subparsers) -> None:
    ae = subparsers.add_parser(
        "ae",
        help="DIMSE allow-list of calling AE titles (deny by default: C-ECHO only)",
        description=AE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ae.add_subparsers(title="ae commands", required=True)
    allow = sub.add_parser(
        "allow",
        help="let an AE use services, as an account or with a role",
        description=AE_HELP
        + """
Examples:
  tessera ae allow CLINICA_US store find get worklist --as clinicA
  tessera ae allow PACS2 find move --role integration --address 10.0.4.0/24
  tessera ae allow SCANNER1 store --role integration --certificate sha256:AB12...
The title '*' matches every AE not listed by name; it opens the port to anyone who can
reach it (calling AE titles are not authenticated), and the hub warns about it at start.
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common()],
    )
    allow.add_argument("ae_title", help="calling AE title (case-sensitive), or '*'")
    allow.add_argument("services", nargs="+", choices=SERVICES)
    who = allow.add_mutually_exclusive_group(required=True)
    who.add_argument("--as", dest="user", metavar="USER",
                     help="the account the AE acts as (its role, its objects)")  # fmt: skip
    who.add_argument("--role", choices=sorted(ROLES),
                     help="an AE-only principal named ae:<title> with this role")  # fmt: skip
    allow.add_argument("--address", metavar="IP[/PREFIX]",
                       help="accept the AE only from this address or network")  # fmt: skip
    allow.add_argument("--certificate", metavar="SHA256|SUBJECT",
                       help="accept the AE only with this TLS client certificate: its SHA-256 "
                       "fingerprint or subject DN (TLS DIMSE port with a CA)")  # fmt: skip
    allow.add_argument("--note", default="")
    allow.set_defaults(func=_run(_ae_allow))
    rm = sub.add_parser("remove", help="remove an AE (it gets C-ECHO only)", parents=[_common()])
    rm.add_argument("ae_title")
    rm.set_defaults(func=_run(_ae_remove))
    lst = sub.add_parser("list", help="list allowed AEs", parents=[_common()])
    lst.set_defaults(func=_run(_ae_list))


def _common() -> argparse.ArgumentParser:
    """``--data`` and ``-v`` again on each sub-command, so they may come after it too.

    SUPPRESS keeps a sub-command from resetting a value given before it.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="data folder")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    return common


Handler = Callable[[argparse.Namespace, "AsyncEngine", Settings], Awaitable[int]]


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        import asyncio

        from hub.archive.index import create_schema, make_engine
        from hub.security import audit_trail
        from hub.security.accounts import AccountError

        settings = Settings.from_env(data_dir=getattr(args, "data", None))

        async def main() -> int:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            engine = make_engine(settings.db_url)
            try:
                await create_schema(engine)
                audit_trail.attach(engine, settings.data_dir, settings.security.audit_key)
                return await handler(args, engine, settings)
            except (AccountError, ValueError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            finally:
                audit_trail.detach(engine)
                await engine.dispose()

        return asyncio.run(main())

    return command


def _read_password(from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise ValueError("no terminal to ask for a password: use --password-stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("the passwords differ")
    return first


async def _record(engine: AsyncEngine, action: str, detail: dict | None = None) -> None:
    from hub.audited import operator
    from hub.security import audit_trail

    await audit_trail.audit(
        engine,
        who=operator(),
        role="operator",
        action=action,
        outcome="success",
        source="cli",
        detail=detail,
    )


async def _user_add(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.security import accounts

    password = None if args.no_password else _read_password(args.password_stdin)
    await accounts.create_user(engine, args.username, args.role, password)
    await _record(engine, "user.add", {"user": args.username, "role": args.role})
    print(f"created {args.role} {args.username}")
    return 0


async def _user_list(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.security import accounts

    for u in await accounts.list_users(engine):
        state = "disabled" if u["disabled"] else "active"
        print(f"{u['username']:<24} {u['role']:<12} {state:<9} since {_day(u['created_at'])}")
    return 0


async def _user_disable(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.security import accounts

    change = await accounts.set_disabled(engine, args.username, not args.enable)
    action = "user.enable" if args.enable else "user.disable"
    await _record(engine, action, change.as_detail())
    print(f"{args.username}: {'enabled' if args.enable else 'disabled'}")
    return 0


async def _user_role(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.security import accounts

    change = await accounts.set_role(engine, args.username, args.role)
    await _record(engine, "user.role", change.as_detail())
    print(f"{args.username}: {change.old} -> {change.new}")
    return 0


async def _user_password(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.security import accounts, passwords

    if args.generate:
        password = passwords.generate()
        change = await accounts.set_password(engine, args.username, password, temporary=True)
        await _record(engine, "user.password", change.as_detail() | {"generated": True})
        print(f"one-time password for {args.username} (shown once):", file=sys.stderr)
        print(password)
        return 0
    change = await accounts.set_password(engine, args.username, _read_password(args.password_stdin))
    await _record(engine, "user.password", change.as_detail())
    print(f"{args.username}: password changed")
    return 0


async def _user_token(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.security import accounts

    if args.revoke is not None:
        if not await accounts.revoke_token(engine, args.revoke, args.username):
            print(f"error: no active token {args.revoke}", file=sys.stderr)
            return 1
        await _record(engine, "token.revoke", {"token": args.revoke})
        print(f"token {args.revoke} revoked")
        return 0
    if args.list:
        for t in await accounts.list_tokens(engine, args.username):
            state = "revoked" if t["revoked_at"] else (
                "expired" if t["expires_at"] and t["expires_at"] < time.time() else "active"
            )  # fmt: skip
            expires = _day(t["expires_at"]) if t["expires_at"] else "never"
            print(f"{t['id']:>5} {t['username']:<20} {state:<8} expires {expires} "
                  f"scopes={t['scopes'] or 'role'} {t['label']}")  # fmt: skip
        return 0
    if not args.username:
        print("error: give a username, --list or --revoke ID", file=sys.stderr)
        return 2
    token_id, secret = await accounts.issue_token(
        engine,
        args.username,
        scopes=args.scope,
        ttl_seconds=args.days * 86400 if args.days > 0 else None,
        label=args.label,
    )
    await _record(engine, "token.issue", {"user": args.username, "token": token_id})
    print(f"token {token_id} for {args.username} (shown once, keep it secret):", file=sys.stderr)
    print(secret)
    return 0


async def _audit_verify(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.security import audit_trail
    from hub.security.keys import audit_key

    verdict = await audit_trail.verify(
        engine,
        audit_key(settings.data_dir, settings.security.audit_key),
        audit_trail.head_path_for(settings.data_dir),
    )
    for problem in verdict.problems:
        print(f"TAMPERED: {problem}")
    if verdict.ok:
        anchor = "" if verdict.head_checked else " (no head anchor found: tail not checked)"
        print(f"audit trail intact: {verdict.records} records{anchor}")
        return 0
    return 1


async def _audit_export(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.security import audit_trail

    # A command-line process: blocking writes do not hold up any server.
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115, ASYNC230
    try:
        async for line in audit_trail.export_syslog(engine, since_seq=args.since):
            out.write(line + "\n")
    finally:
        if args.out:
            out.close()
    return 0


async def _audit_search(args, engine: AsyncEngine, settings: Settings) -> int:
    import json

    from hub.security import audit_search

    given = [(name, getattr(args, name)) for name in audit_search.PARAMETERS]
    try:
        wanted = audit_search.AuditSearch.from_pairs((k, v) for k, v in given if v is not None)
    except audit_search.SearchError as e:
        raise ValueError(f"--{e.parameter}: {e.reason}") from None
    page = await audit_search.search(engine, wanted)
    for record in page.records:
        print(json.dumps(vars(record), ensure_ascii=False) if args.json else _audit_line(record))
    if page.next is not None:
        print(f"older records: add --before {page.next}", file=sys.stderr)
    return 0


def _audit_line(record) -> str:
    """A record on one line, its fields apart by spaces: a field that holds a space, a line
    break or nothing (a failed login's user name can be anything) is quoted as JSON."""
    import json

    def shown(value: str | None) -> str:
        if value is None:
            return "-"
        plain = value and all(c.isprintable() and not c.isspace() for c in value)
        return value if plain else json.dumps(value, ensure_ascii=False)

    detail = record.detail
    fields = [str(record.seq), record.time, record.who, record.role, record.action,
              record.outcome, record.patient, record.study, record.source]  # fmt: skip
    line = " ".join(shown(f) for f in fields)
    if detail is None:
        return line
    return line + " " + json.dumps(detail, ensure_ascii=False)


async def _ae_allow(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.audited import operator
    from hub.security import dimse_acl

    change = await dimse_acl.allow_ae(
        engine,
        args.ae_title,
        args.services,
        user=args.user,
        role=args.role,
        address=args.address,
        certificate=args.certificate,
        note=args.note,
        who=operator(),
    )
    await _record(engine, "ae.allow", change.audit_detail())
    print(f"{args.ae_title}: {' '.join(args.services)} as {args.user or 'ae:' + args.ae_title}")
    if args.ae_title.strip() == dimse_acl.ANY_AE:
        print(f"WARNING: every calling AE may now use {' '.join(args.services)}", file=sys.stderr)
    return 0


async def _ae_remove(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.security import dimse_acl

    change = await dimse_acl.remove_ae(engine, args.ae_title)
    if change is None:
        print(f"error: {args.ae_title} is not on the list", file=sys.stderr)
        return 1
    await _record(engine, "ae.remove", change.audit_detail())
    return 0


async def _ae_list(args, engine: AsyncEngine, settings: Settings) -> int:
    from hub.security import dimse_acl

    for row in await dimse_acl.list_ae(engine):
        title = row["ae_title"]
        if title == dimse_acl.ANY_AE:
            title = "* (ANY AE!)"
        bound = [f"from {row['address']}" if row["address"] else "",
                 f"cert {row['certificate']}" if row["certificate"] else ""]  # fmt: skip
        print(
            f"{title:<16} {' '.join(row['services']):<26} as {row['principal']} "
            f"({row['effective_role'] or 'no such user'}) {' '.join(b for b in bound if b)} "
            f"{row['note']}".rstrip()
        )
    print("any other calling AE: C-ECHO only")
    return 0


def _day(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts)) if ts else "-"
