"""Helpers of the conformance tests: the statement as the running hub serves it, a hub with its
DIMSE port open, and for each kind of matching the statement names, values that must match a
stored value and values that must not."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import aiohttp
from hubtest import HubServer, running_hub

from hub.config import Settings
from hub.dimse.service import DIMSE_KEY
from hub.security.dimse_acl import SERVICES, allow_ae

HOST = "127.0.0.1"
CALLING_AE = "CONFORMANCE"


async def served_statement(hub: HubServer) -> dict:
    """GET /api/conformance as anyone gets it: without signing in."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{hub.url}/api/conformance") as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


@dataclasses.dataclass
class DimseHub:
    http: HubServer
    port: int


@contextlib.asynccontextmanager
async def hub_with_dimse(settings: Settings) -> AsyncIterator[DimseHub]:
    """The whole hub with its DIMSE port open on a free port, CALLING_AE and dcmtk's tools
    allowed every service."""
    settings = dataclasses.replace(settings, dimse_port=0)
    async with running_hub(settings) as hub:
        for title in (CALLING_AE, "STORESCU", "ECHOSCU"):
            await allow_ae(hub.archive.engine, title, list(SERVICES), role="admin", note="tests")
        server = hub.app[DIMSE_KEY].server
        assert server is not None
        yield DimseHub(hub, server.port)


async def in_thread(fn, *args):
    """pynetdicom blocks, and the SCP's handlers need this loop: run the SCU beside it."""
    return await asyncio.to_thread(fn, *args)


def service(statement: dict, name: str, role: str) -> list[dict]:
    return [s for s in statement["dimse"]["services"] if s["service"] == name and s["role"] == role]


def _bumped(value: str) -> str:
    """A value of the same form that differs from ``value`` (a later date, time or number)."""
    if value.isdigit():
        return str(int(value) + 1).zfill(len(value))
    return value + "X"


def patterns(matching: str, value: str) -> list[tuple[str, bool]]:
    """(matching value, whether it must match an object holding ``value``) for one kind of
    matching, as the statement names them."""
    if matching == "single value":
        return [(value, True), (_bumped(value), False)]
    if matching == "wildcard":
        wild = value[:-1] + "*" if len(value) > 1 else "?"
        return [(wild, True), ("?" * (len(value) + 1), False)]
    if matching == "range":
        return [
            (f"{value}-{value}", True),
            (f"-{value}", True),
            (f"{value}-", True),
            (f"{_bumped(value)}-", False),
        ]
    if matching == "list of UIDs":
        return [(f"1.2.3\\{value}", True), ("1.2.3\\1.2.4", False)]
    if matching == "multiple values":
        return [(f"ZZ\\{value}", True), ("ZZ\\YY", False)]
    if matching == "case-insensitive":
        return [(value.swapcase(), True), (_bumped(value).swapcase(), False)]
    raise AssertionError(
        f"the statement names a kind of matching the tests do not know: {matching}"
    )
