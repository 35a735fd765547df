"""One audit chain for every node of one PostgreSQL index.

Two ``tessera serve`` nodes append at once (each query a signed-in user sends is recorded); the
chain they leave is intact for ``tessera audit verify`` run on either node's data folder, whose
head anchor names a record somewhere before the end: the other node wrote on after it.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from hubtest import HubProcess
from security_support import NEEDS_POSTGRES, cli
from sqlalchemy import select

from hub.archive.index import make_engine
from hub.security.audit_trail import head_path_for
from hub.security.tables import audit_log

pytestmark = NEEDS_POSTGRES

QUERIES = 120  # per node; each is a query string of its own, so each is one record


async def _query_all(http: aiohttp.ClientSession, node: HubProcess, name: str, bearer) -> None:
    async def one(n: int) -> None:
        url = f"{node.url}/dicomweb/studies?AccessionNumber={name}-{n}"
        async with http.get(url, headers=bearer) as resp:
            assert resp.status == 200, await resp.text()

    await asyncio.gather(*(one(n) for n in range(QUERIES)))


async def test_two_nodes_append_one_chain_that_verifies_on_both(nodes, database_url) -> None:
    a, b = nodes
    cli(a.data, "user", "add", "reader", "--role", "pathologist", "--no-password")
    bearer = {"Authorization": f"Bearer {cli(a.data, 'user', 'token', 'reader').stdout.strip()}"}
    connections = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connections) as http:
        await asyncio.gather(_query_all(http, a, "a", bearer), _query_all(http, b, "b", bearer))
    a.stop()  # each node writes what it still holds as it stops
    b.stop()

    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(audit_log.c.seq, audit_log.c.detail).where(audit_log.c.action == "query")
                )
            ).all()
            last = await conn.scalar(select(audit_log.c.seq).order_by(audit_log.c.seq.desc()))
    finally:
        await engine.dispose()
    asked = [json.loads(r.detail)["query"] for r in rows]
    for name in ("a", "b"):
        wanted = {f"AccessionNumber={name}-{n}" for n in range(QUERIES)}
        assert wanted <= set(asked), f"node {name} lost records"
    assert len(asked) == len(set(asked)) == 2 * QUERIES

    heads = {}
    for node in (a, b):
        said = cli(node.data, "audit", "verify").stdout
        assert said.startswith(f"audit trail intact: {last} records\n"), said  # anchor checked
        heads[node.url] = int(head_path_for(node.data).read_text().split()[0])
    assert min(heads.values()) < last, "one node's anchor is behind the end of the chain"
    print(f"{last} records; head anchors at {sorted(heads.values())}")
