"""What the commands that edit a configuration scope share: the edit made under the operator's
login name, its refusal with the reason on standard error, and its audit record. Importing it
imports nothing heavy."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from hub.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from hub.configstore.cached import Change
    from hub.configstore.entries import Draft


class Editable(Protocol):
    engine: AsyncEngine

    async def edit(self, who: str, apply: Callable[[Draft], Change]) -> Change: ...


async def edit_by_command(
    settings: Settings,
    scope: Editable,
    action: str,
    apply: Callable[[Draft], Change],
    *,
    missing: str,
    shown: Callable[[Change], str],
) -> int:
    """0 once the edit is made and audited, with ``shown`` of it printed; 1 with the reason
    for an entry that is not there (``missing`` says what it is) or one refused."""
    from hub.audited import audit_command, operator

    try:
        done = await scope.edit(operator(), apply)
    except KeyError as exc:
        print(f"{missing} {exc.args[0]!r}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    await audit_command(settings, scope.engine, action, detail=done.audit_detail())
    print(shown(done))
    return 0
