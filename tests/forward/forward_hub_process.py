"""Run an archive with forwarding until the process is killed: the crash half of the
restart test. Usage: python forward_hub_process.py DATA_DIR FORWARD_CONFIG_JSON [DATABASE_URL]"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, as under pytest

from forward_peers import Hub  # noqa: E402


async def main(data_dir: str, config: str, database_url: str | None = None) -> None:
    await Hub(Path(data_dir), json.loads(config), database_url).open()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
