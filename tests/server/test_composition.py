"""One composition root builds both processes: a reader's Application is the read-only part of
the primary's, behind the same gate, and relays the rest."""

from __future__ import annotations

from pathlib import Path

from hub.app import build_app
from hub.app_keys import ARCHIVE_KEY
from hub.config import Settings
from hub.serve.proxy import Upstream
from hub.serve.readers import SERVED_HERE


def _routes(app) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for route in app.router.routes():
        if route.name:
            routes.setdefault(route.name, set()).add(route.method)
    return routes


async def test_a_reader_serves_a_read_only_part_of_the_primary(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    primary = await build_app(settings)  # opens the index, which the reader then requires
    reader = await build_app(settings, upstream=Upstream(str(tmp_path / "primary.sock")))
    try:
        ours, theirs = _routes(reader), _routes(primary)
        assert set(ours) <= set(theirs)
        served = {name: methods for name, methods in ours.items() if name.startswith(SERVED_HERE)}
        assert any(name.startswith("dicomweb.read.") for name in served)
        assert all(methods <= {"GET", "HEAD"} for methods in served.values())
        # Telehealth, jobs, forwarding and the worklist are the primary's alone; a reader relays
        # their requests, and those of its own routes it does not serve (STOW, logins).
        only_primary = set(theirs) - set(ours)
        assert any(name.startswith("telehealth.") for name in only_primary)
        assert not any(name.startswith("telehealth.") for name in ours)
        assert "dicomweb.write.stow" in ours and "dicomweb.write.stow" not in served
        assert reader.middlewares[0] is primary.middlewares[0]  # the same error handler first
    finally:
        await reader[ARCHIVE_KEY].close()
        await primary[ARCHIVE_KEY].close()


async def test_every_entry_point_gets_each_ingest_hook_once(tmp_path: Path) -> None:
    from hub.app import open_archive

    settings = Settings(data_dir=tmp_path / "data")
    archive = await open_archive(settings)  # as `tessera import` and `tessera serve` do
    try:
        hooks = list(archive.ingestor.hooks)
        owners = {type(hook.__self__).__name__ for hook in hooks}
        assert owners == {"Forwarder", "DoseRegistry"} and len(hooks) == 2
        app = await build_app(settings, archive)  # the doors install theirs on the same archive
        assert archive.ingestor.hooks == hooks
        assert app[ARCHIVE_KEY] is archive
    finally:
        await archive.close()
