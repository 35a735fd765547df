"""Users, bearer tokens and browser sessions, and the principal they resolve to."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.security import passwords, revocations
from hub.security.policy import ROLES, validate_scopes
from hub.security.tables import tokens, users

# User names of AE-only DIMSE principals (``tessera ae allow AE --role ROLE``): "ae:<title>".
AE_PRINCIPAL_PREFIX = "ae:"

TOKEN_PREFIX = "tsr_"
SESSION_SECONDS = 12 * 3600
# Resolved tokens are cached per process for a few seconds so that a frame request does not
# cost a database round trip. A revocation reaches every process's cache at once through
# hub.security.revocations, which on PostgreSQL also bounds the cache to under a second.
CACHE_SECONDS = 5.0


class AccountError(ValueError):
    """A user or token operation was refused (unknown user, bad role, weak password...)."""


class UnknownUser(AccountError):
    """No account has this user name."""


class WrongPassword(AccountError):
    """The password given as the current one is not."""


class ChangeRefused(AccountError):
    """The change conflicts with the accounts as they are: it would leave no active
    administrator, or the account changed meanwhile."""


@dataclass(frozen=True)
class UserChange:
    """One field of an account, before and after a change (for the audit trail)."""

    username: str
    field: str
    old: object
    new: object

    def as_detail(self) -> dict:
        return {"user": self.username, "field": self.field, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class Principal:
    """Who is calling: put on ``request["principal"]`` by the security middleware."""

    user: str
    role: str
    user_id: int
    scopes: frozenset[str] | None = None  # None: everything the role has
    via: str = "session"  # "session" | "token"
    token_id: int | None = None
    # A session signed in with a one-time password: it may only choose a new one.
    password_temporary: bool = False

    @property
    def username(self) -> str:
        return self.user

    @property
    def actor(self) -> str:
        """This principal's identity on what it stores (``instances.actor``) and in its read
        scope: the user name, whatever door it comes through."""
        return self.user

    def has(self, permission: str) -> bool:
        granted = ROLES.get(self.role, frozenset())
        return permission in granted and (self.scopes is None or permission in self.scopes)

    def as_json(self) -> dict:
        return {
            "user": self.user,
            "role": self.role,
            "via": self.via,
            "scopes": sorted(self.scopes if self.scopes is not None else ROLES[self.role]),
            "password_temporary": self.password_temporary,
        }


def actor_of(who: Principal | None) -> str | None:
    """The actor every door records for a principal's writes (None: no principal)."""
    return None if who is None else who.actor


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- users -------------------------------------------------------------------------------


async def create_user(
    engine: AsyncEngine,
    username: str,
    role: str,
    password: str | None,
    *,
    temporary: bool = False,
) -> int:
    """``temporary``: the password is a one-time one, to be replaced at the first sign-in."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    if not username or len(username) > 128 or not username.isprintable() or " " in username:
        raise AccountError("username must be 1-128 printable characters without spaces")
    if username.startswith(AE_PRINCIPAL_PREFIX):
        # An account of that name would read what the AE-only principal stored.
        raise AccountError(f"usernames starting with {AE_PRINCIPAL_PREFIX!r} name DICOM AEs")
    password_hash = None
    if password is not None:
        try:
            passwords.check_strength(password)
        except ValueError as e:
            raise AccountError(str(e)) from None
        password_hash = await passwords.hash_password(password)
    async with engine.begin() as conn:
        exists = await conn.scalar(select(users.c.id).where(users.c.username == username))
        if exists is not None:
            raise AccountError(f"user {username!r} exists")
        result = await conn.execute(
            users.insert().values(
                username=username,
                role=role,
                password_hash=password_hash,
                disabled=False,
                created_at=time.time(),
                password_temporary=temporary and password is not None,
            )
        )
        return result.inserted_primary_key[0]


async def list_users(engine: AsyncEngine) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(users.c.username, users.c.role, users.c.disabled, users.c.created_at).order_by(
                users.c.username
            )
        )
        return [dict(r._mapping) for r in rows]


async def set_disabled(engine: AsyncEngine, username: str, disabled: bool = True) -> UserChange:
    """Disable an account (its sessions and tokens stop working at once) or enable it again."""
    return await _change_user(engine, username, "disabled", disabled)


async def set_role(engine: AsyncEngine, username: str, role: str) -> UserChange:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    return await _change_user(engine, username, "role", role)


ACTIVE_ADMIN = and_(users.c.role == "admin", users.c.disabled.is_(False))


def _active_admin(role: str, disabled: bool) -> bool:
    return role == "admin" and not disabled


async def _change_user(engine: AsyncEngine, username: str, field: str, value: object) -> UserChange:
    """Set ``role`` or ``disabled`` of one account, refusing to leave no active administrator.

    The update only applies to the account as it was read (and, when it takes an active
    administrator away, only while another one remains), so two administrators demoting each
    other at once cannot both succeed.
    """
    async with engine.begin() as conn:
        await _hold_admins(conn, username)
        before = await _state(conn, username)
        if before is None:
            raise UnknownUser(f"no user {username!r}")
        after = {**before, field: value}
        change = update(users).where(
            users.c.username == username,
            users.c.role == before["role"],
            users.c.disabled.is_(before["disabled"]),
        )
        removes_admin = _active_admin(**before) and not _active_admin(**after)
        if removes_admin:
            others = users.alias("other_admins")
            change = change.where(
                exists(
                    select(others.c.id).where(
                        others.c.role == "admin",
                        others.c.disabled.is_(False),
                        others.c.username != username,
                    )
                )
            )
        if (await conn.execute(change.values({field: value}))).rowcount == 0:
            if await _state(conn, username) != before:
                raise ChangeRefused(f"user {username!r} was changed meanwhile; try again")
            verb = "demote" if field == "role" else "disable"
            raise ChangeRefused(
                f"cannot {verb} {username!r}: it is the last active administrator "
                "(make another account an administrator first)"
            )
        await revocations.announce_in(conn)
    _forget_all(engine)
    return UserChange(username, field, before[field], value)


async def _hold_admins(conn: AsyncConnection, username: str) -> None:
    """Lock the active administrators and the account until this transaction ends
    (PostgreSQL; in id order, so two changes cannot deadlock). On SQLite the update itself
    takes the database's one write lock, and reads the accounts under it."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            select(users.c.id)
            .where(or_(ACTIVE_ADMIN, users.c.username == username))
            .order_by(users.c.id)
            .with_for_update()
        )


async def _state(conn: AsyncConnection, username: str) -> dict | None:
    row = (
        await conn.execute(
            select(users.c.role, users.c.disabled).where(users.c.username == username)
        )
    ).one_or_none()
    return None if row is None else {"role": row.role, "disabled": bool(row.disabled)}


async def set_password(
    engine: AsyncEngine, username: str, password: str, *, temporary: bool = False
) -> UserChange:
    """Set a password and end the account's sessions. The change says whether the account
    had a password before (a service account had none), never what either one is.
    ``temporary``: a one-time password, to be replaced at the next sign-in."""
    try:
        passwords.check_strength(password)
    except ValueError as e:
        raise AccountError(str(e)) from None
    password_hash = await passwords.hash_password(password)
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(users.c.id, users.c.password_hash).where(users.c.username == username)
            )
        ).one_or_none()
        if row is None:
            raise UnknownUser(f"no user {username!r}")
        user_id = row.id
        await conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(password_hash=password_hash, password_temporary=temporary)
        )
        # Whoever knew the old password may hold a session: end them all.
        await _end_sessions(conn, user_id)
    _forget_all(engine)
    return UserChange(username, "password", "set" if row.password_hash else "none", "set")


async def _end_sessions(conn: AsyncConnection, user_id: int, keep: int | None = None) -> None:
    """End the account's sessions (but ``keep``), and make it known to every process."""
    ending = [
        tokens.c.user_fk == user_id,
        tokens.c.kind == "session",
        tokens.c.revoked_at.is_(None),
    ]
    if keep is not None:
        ending.append(tokens.c.id != keep)
    await conn.execute(update(tokens).where(*ending).values(revoked_at=time.time()))
    await revocations.announce_in(conn)


async def check_password(engine: AsyncEngine, username: str, password: str) -> Principal | None:
    """The principal if the user exists, is enabled and the password matches."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.username == username))).one_or_none()
    ok = await passwords.verify_password(row.password_hash if row else None, password)
    if not ok or row is None or row.disabled:
        return None
    return Principal(
        user=row.username,
        role=row.role,
        user_id=row.id,
        via="session",
        password_temporary=bool(row.password_temporary),
    )


async def change_own_password(engine: AsyncEngine, who: Principal, current: str, new: str) -> None:
    """A signed-in user replaces their password, proving the current one: the account's other
    sessions end, this one goes on, and a one-time password is one no more. WrongPassword or
    AccountError (a weak or unchanged password) when refused."""
    async with engine.connect() as conn:
        stored = await conn.scalar(select(users.c.password_hash).where(users.c.id == who.user_id))
    if not await passwords.verify_password(stored, current):
        raise WrongPassword("the current password is not right")
    if new == current:
        raise AccountError("the new password is the current one: choose another")
    try:
        passwords.check_strength(new)
    except ValueError as e:
        raise AccountError(str(e)) from None
    password_hash = await passwords.hash_password(new)
    async with engine.begin() as conn:
        await conn.execute(
            update(users)
            .where(users.c.id == who.user_id)
            .values(password_hash=password_hash, password_temporary=False)
        )
        await _end_sessions(conn, who.user_id, keep=who.token_id)
    _forget_all(engine)


async def account_exists(engine: AsyncEngine, username: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(select(users.c.id).where(users.c.username == username))
    return found is not None


async def ensure_admin(engine: AsyncEngine, given: str | None = None) -> str | None:
    """Create the first administrator when there is none.

    The password is ``given`` (TESSERA_ADMIN_PASSWORD), or is generated and returned so the
    caller can print it once. Returns None when nothing was generated.
    """
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(users).where(users.c.role == "admin")
        )
    if count:
        return None
    password = given or passwords.generate()
    try:
        await create_user(engine, "admin", "admin", password, temporary=given is None)
    except AccountError as e:
        if "exists" in str(e):  # a concurrent first start won the race
            return None
        raise
    return None if given else password


# -- tokens and sessions -----------------------------------------------------------------


async def issue_token(
    engine: AsyncEngine,
    username: str,
    *,
    kind: str = "api",
    scopes: list[str] | None = None,
    ttl_seconds: float | None = 30 * 86400,
    label: str = "",
) -> tuple[int, str]:
    """Create a token; returns (token id, secret). The secret is shown once and never stored."""
    async with engine.begin() as conn:
        row = (await conn.execute(select(users).where(users.c.username == username))).one_or_none()
        if row is None:
            raise AccountError(f"no user {username!r}")
        if row.disabled:
            raise AccountError(f"user {username!r} is disabled")
        try:
            wanted = validate_scopes(row.role, scopes)
        except ValueError as e:
            raise AccountError(str(e)) from None
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        result = await conn.execute(
            tokens.insert().values(
                token_hash=_digest(secret),
                user_fk=row.id,
                kind=kind,
                label=label,
                scopes=" ".join(sorted(wanted)) if wanted is not None else None,
                created_at=now,
                expires_at=now + ttl_seconds if ttl_seconds else None,
                revoked_at=None,
            )
        )
        return result.inserted_primary_key[0], secret


async def resolve_token(engine: AsyncEngine, secret: str) -> Principal | None:
    """The principal a bearer token or session secret stands for, if valid now."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 256:
        return None
    digest = _digest(secret)
    now = time.time()
    signal = revocations.signal_for(engine)
    if signal is not None and signal.changed():
        forget_cached()
    generation = _generation
    cached = _cache.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    query = (
        select(tokens, users.c.username, users.c.role, users.c.disabled, users.c.password_temporary)
        .join(users, users.c.id == tokens.c.user_fk)
        .where(tokens.c.token_hash == digest)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    principal = None
    if (
        row is not None
        and row.revoked_at is None
        and not row.disabled
        and (row.expires_at is None or row.expires_at > now)
    ):
        principal = Principal(
            user=row.username,
            role=row.role,
            user_id=row.user_fk,
            scopes=frozenset(row.scopes.split()) if row.scopes is not None else None,
            via="session" if row.kind == "session" else "token",
            token_id=row.id,
            password_temporary=row.kind == "session" and bool(row.password_temporary),
        )
    if generation != _generation:
        return principal  # credentials changed while this row was read: do not keep it
    expires = now + revocations.cache_seconds(engine, CACHE_SECONDS)
    if row is not None and row.expires_at is not None:
        expires = min(expires, row.expires_at)
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[digest] = (expires, principal)
    return principal


async def revoke_token(engine: AsyncEngine, token_id: int, username: str | None = None) -> bool:
    """Revoke by id (restricted to ``username``'s tokens when given). False if none matched."""
    stmt = update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
    if username is not None:
        stmt = stmt.where(
            tokens.c.user_fk
            == select(users.c.id).where(users.c.username == username).scalar_subquery()
        )
    async with engine.begin() as conn:
        result = await conn.execute(stmt.values(revoked_at=time.time()))
        await revocations.announce_in(conn)
    _forget_all(engine)
    return result.rowcount > 0


async def revoke_secret(engine: AsyncEngine, secret: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(tokens)
            .where(tokens.c.token_hash == _digest(secret), tokens.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
        await revocations.announce_in(conn)
    _forget_all(engine)


async def list_tokens(engine: AsyncEngine, username: str | None = None) -> list[dict]:
    query = (
        select(
            tokens.c.id,
            users.c.username,
            tokens.c.kind,
            tokens.c.label,
            tokens.c.scopes,
            tokens.c.created_at,
            tokens.c.expires_at,
            tokens.c.revoked_at,
        )
        .join(users, users.c.id == tokens.c.user_fk)
        .where(tokens.c.kind == "api")
        .order_by(tokens.c.id)
    )
    if username is not None:
        query = query.where(users.c.username == username)
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def purge_expired(engine: AsyncEngine, keep_seconds: float = 7 * 86400) -> int:
    """Delete sessions and tokens that expired or were revoked more than a week ago."""
    cutoff = time.time() - keep_seconds
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(tokens).where(or_(tokens.c.expires_at < cutoff, tokens.c.revoked_at < cutoff))
        )
    return result.rowcount


_cache: dict[str, tuple[float, Principal | None]] = {}
_generation = 0  # counts the times the cache was emptied


def forget_cached() -> None:
    """Empty this process's token cache (credentials changed somewhere)."""
    global _generation
    _generation += 1
    _cache.clear()


def _forget_all(engine: AsyncEngine) -> None:
    """Credentials changed: empty this process's cache and tell the others (on PostgreSQL the
    transaction of the change has also announced it: ``revocations.announce_in``)."""
    forget_cached()
    signal = revocations.signal_for(engine)
    if signal is not None:
        signal.announce()
