"""Schemathesis fuzzes a live ``tessera serve`` over every operation of /api/openapi.json, once
signed in as an administrator and once as a clinic user: whatever it sends, the hub never answers
5xx, and it answers with the statuses, content types and bodies the document gives.

The hub runs as a subprocess because Schemathesis calls it synchronously (``requests``). The
examples are derandomized, so a run is the same every time. The fuzz has users of its own
(``fuzz-admin``, ``fuzz-clinic``); the cases that would disable them, change their roles or
revoke their tokens are skipped (``harms_the_fuzz``), and the run ends by checking that it can still sign in.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import hypothesis
import pytest
import requests
import schemathesis
from hubtest import HubProcess, bearer_for, free_port
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hub.requestdata import BadInput, parse_int

EXAMPLES = 25
ROLES = ("admin", "clinic")
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NOT_FUZZED = {
    # a WebSocket upgrade: nothing to send it over plain HTTP but a refused handshake
    "telehealth.signal.ws",
    # server-sent events: a job that exists streams until it ends, which a request cannot wait for
    "jobs.read.events",
}  # (the audit export streams too, but the fuzz's short trail ends at once: it is fuzzed)


@dataclass(frozen=True)
class FuzzedHub:
    url: str
    headers: dict[str, dict[str, str]]  # by role, for the fuzz's own users


@pytest.fixture(scope="module")
def fuzzed_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedHub]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    running = HubProcess(data, free_port())
    threading.Thread(target=running.proc.stdout.read, daemon=True).start()  # keep it flowing
    try:
        headers = {role: bearer_for(data, fuzz_user(role), role) for role in ROLES}
        yield FuzzedHub(running.url, headers)
    finally:
        running.stop()


def fuzz_user(role: str) -> str:
    return f"fuzz-{role}"


def served_document(fuzzed_hub: FuzzedHub, role: str) -> schemathesis.BaseSchema:
    url = f"{fuzzed_hub.url}/api/openapi.json"
    return schemathesis.openapi.from_url(url, headers=dict(fuzzed_hub.headers[role]), timeout=30)


# Schemathesis's own pytest plugin does not run on pytest 9.2 (it sets Node._nodeid, which is gone),
# so each operation is a Hypothesis test of its own here, and the failures are gathered in one report.
@pytest.mark.parametrize("role", ROLES)
def test_no_operation_fails_or_breaks_its_description(fuzzed_hub: FuzzedHub, role: str) -> None:
    failures = []
    for result in served_document(fuzzed_hub, role).get_all_operations():
        operation = result.ok()
        if operation_id(operation) not in NOT_FUZZED:
            failures += fuzz(operation, fuzzed_hub, fuzzed_hub.headers[role])
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
    me = requests.get(f"{fuzzed_hub.url}/api/me", headers=fuzzed_hub.headers[role], timeout=30)
    assert me.status_code == 200, "the fuzz locked itself out"


def fuzz(
    operation: schemathesis.APIOperation, fuzzed_hub: FuzzedHub, headers: dict[str, str]
) -> list[str]:
    """What went wrong in EXAMPLES valid and invalid requests to the operation, sent with
    ``headers``."""
    cases = hypothesis.strategies.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(cases)
    def run(case: schemathesis.Case) -> None:
        if not harms_the_fuzz(case, fuzzed_hub):
            case.call_and_validate(headers=dict(headers), checks=CHECKS, timeout=30)

    try:
        run()
    except (Exception, BaseExceptionGroup) as failure:  # Schemathesis groups what its checks found
        return [f"{operation.label}: {shortened(str(failure))}"]
    return []


def shortened(report: str, width: int = 300) -> str:
    """The report with each line cut to ``width``: a fuzzed body can be megabytes long."""
    return "\n".join(
        line if len(line) <= width else line[:width] + "..." for line in report.splitlines()
    )


def operation_id(operation: schemathesis.APIOperation) -> str:
    return operation.definition.raw["operationId"]


def harms_the_fuzz(case: schemathesis.Case, fuzzed_hub: FuzzedHub) -> bool:
    """A case that would lock the fuzz out of the hub, or change what its users may do:
    disabling one of its own users, giving one another role or revoking one of its own tokens.
    Those operations are still fuzzed with every other value."""
    operation = operation_id(case.operation)
    if operation in ("admin.users.disable", "admin.users.role.put"):
        return case.path_parameters["username"] in {fuzz_user(role) for role in ROLES}
    if operation == "admin.tokens.revoke.delete":
        try:
            return parse_int(str(case.path_parameters["id"]), "id") in own_token_ids(fuzzed_hub)
        except BadInput:
            return False
    return False


def own_token_ids(fuzzed_hub: FuzzedHub) -> set[int]:
    url = f"{fuzzed_hub.url}/api/admin/tokens"
    rows = requests.get(url, headers=fuzzed_hub.headers["admin"], timeout=30).json()
    return {row["id"] for row in rows if row["username"] in {fuzz_user(role) for role in ROLES}}
