"""The access policy over the whole hub: every route of build_app has a rule, and the
role x route matrix holds for all of them (see test_security_matrix for the expectation)."""

from __future__ import annotations

from test_security_matrix import route_table, walk_matrix

from hub.security.accounts import create_user, issue_token
from hub.security.middleware import SECURITY_KEY
from hub.security.policy import rule_for

ROLES = ("admin", "pathologist", "specialist", "clinic", "integration")


def _require_gate(app) -> None:
    assert SECURITY_KEY in app, (
        "hub.app.build_app must call hub.security.setup(app) before the other doors"
    )


def test_every_route_of_the_hub_has_an_access_rule(hub_server) -> None:
    _require_gate(hub_server.app)
    unruled = [
        f"{m} {p} name={n!r}" for m, p, n in route_table(hub_server.app) if not rule_for(n)[0]
    ]
    assert not unruled, "routes without an access rule (name them per the contract):\n" + "\n".join(
        unruled
    )


async def test_role_route_matrix_of_the_hub(hub_server) -> None:
    _require_gate(hub_server.app)
    engine = hub_server.archive.engine
    tokens = {}
    for role in ROLES:
        await create_user(engine, f"matrix-{role}", role, None)
        tokens[role] = (await issue_token(engine, f"matrix-{role}", ttl_seconds=600))[1]
    failures = await walk_matrix(hub_server.url, hub_server.app, tokens)
    assert not failures, "\n".join(failures)
