"""Helpers shared by the security tests: a small app gated by hub.security.setup."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.security import setup

# Tests of several nodes on one index run under tests/with_postgres.sh.
NEEDS_POSTGRES = pytest.mark.skipif(
    not os.environ.get("TESSERA_TEST_POSTGRES"), reason="needs tests/with_postgres.sh"
)
# Every node of one index signs the one audit chain with the same key.
NODES_AUDIT_KEY = "ab" * 32

ROLES = ("admin", "pathologist", "specialist", "clinic", "integration")
PASSWORD = "correct horse battery staple"

# One route per area of the route-naming contract, the way the doors name theirs.
AREA_ROUTES = [
    ("GET", "/health", "public.health"),
    ("GET", "/", "page.home"),
    ("GET", "/dicomweb/studies", "dicomweb.read.studies"),
    ("POST", "/dicomweb/studies", "dicomweb.write.studies"),
    ("POST", "/api/annotations", "annotations.write.save"),
    ("POST", "/api/ai/analyses", "ai.run.analysis"),
    ("GET", "/api/ai/provenance/{sop}", "ai.read.provenance"),
    ("POST", "/api/uploads", "slides.upload.start"),
    ("GET", "/api/jobs/{job}", "jobs.read.status"),
    ("GET", "/api/worklist", "worklist.read.items"),
    ("POST", "/api/worklist", "worklist.write.item"),
    ("GET", "/api/forward", "forward.read.queue"),
    ("POST", "/api/forward/{task}/retry", "forward.admin.retry"),
    ("POST", "/api/telehealth/sessions", "telehealth.start.session"),
    ("POST", "/api/telehealth/sessions/{sid}/join", "telehealth.join.session"),
    ("GET", "/api/telehealth/ws", "telehealth.signal.ws"),
    ("POST", "/api/telehealth/capture", "telehealth.capture.still"),
    ("GET", "/api/dose/patients", "dose.read.patients"),
    ("POST", "/api/dose/patients/{id}/link", "dose.admin.link"),
    ("GET", "/api/admin/probe", "admin.probe"),
    ("GET", "/unnamed", None),
    ("GET", "/mystery", "mystery.thing"),
]


async def _echo(request: web.Request) -> web.Response:
    who = request.get("principal")
    return web.json_response(
        {"route": request.match_info.route.name, "user": who.user if who else None}
    )


async def _stall(request: web.Request) -> web.Response:
    await asyncio.sleep(60)
    return web.json_response({"late": True})


def gated_app(engine: AsyncEngine, data_dir: Path) -> web.Application:
    app = web.Application()
    setup(app, engine=engine, data_dir=data_dir)
    for method, path, name in AREA_ROUTES:
        app.router.add_route(method, path, _echo, name=name)
    app.router.add_get("/api/worklist-stall", _stall, name="worklist.read.stall")
    return app


@dataclass
class Gate:
    url: str
    engine: AsyncEngine
    data_dir: Path
    app: web.Application
    tokens: dict[str, str]  # role -> bearer secret of a user with that role

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def cli(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``tessera ARGS --data DATA`` as an operator runs it; fails the test if it fails."""
    command = [sys.executable, "-m", "hub.cli", *args, "--data", str(data)]
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=120, check=True
    )


async def reset_password(gate: Gate, user: str) -> str:
    """An administrator's reset of the user's password: the one-time password it gives."""
    url = f"{gate.url}/api/admin/users/{user}/password"
    async with (
        aiohttp.ClientSession(headers=gate.headers("admin")) as admin,
        admin.post(url) as response,
    ):
        assert response.status == 200, await response.text()
        return (await response.json())["password"]
