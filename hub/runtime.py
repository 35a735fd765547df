"""Opening the archive outside the server (import, convert, demo) with the same in-transaction
hooks the server installs, so that an object ingested from the command line is forwarded too."""

from __future__ import annotations

from hub.archive import Archive
from hub.archive.migrations.runner import SchemaMode
from hub.config import Settings
from hub.stores import open_store


async def open_archive(settings: Settings, *, schema: SchemaMode = "create") -> Archive:
    from hub.forward.service import install as install_forwarding

    archive = await Archive.open(settings, store=open_store(settings), schema=schema)
    install_forwarding(archive, settings)
    return archive
