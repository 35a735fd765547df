"""First start: an administrator with a one-time password, or the one the environment gives."""

from __future__ import annotations

import pytest

from hub.config import Settings
from hub.security.accounts import AccountError, check_password, ensure_admin, list_users


def _given(environ: dict[str, str]) -> str | None:
    return Settings.from_env(environ).security.admin_password


async def test_first_run_creates_admin_with_a_printed_password(engine) -> None:
    password = await ensure_admin(engine, _given({}))
    assert password is not None and len(password) >= 12
    who = await check_password(engine, "admin", password)
    assert who is not None and who.role == "admin"
    assert who.password_temporary  # the first sign-in chooses the administrator's own
    assert await ensure_admin(engine) is None  # only once
    assert [u["username"] for u in await list_users(engine)] == ["admin"]


async def test_admin_password_from_the_environment(engine) -> None:
    given = _given({"TESSERA_ADMIN_PASSWORD": "set by the installer"})
    assert await ensure_admin(engine, given) is None  # nothing to print
    who = await check_password(engine, "admin", "set by the installer")
    assert who is not None and not who.password_temporary


async def test_weak_admin_password_from_the_environment_is_refused(engine) -> None:
    with pytest.raises(AccountError, match="at least 12"):
        await ensure_admin(engine, _given({"TESSERA_ADMIN_PASSWORD": "admin"}))
