"""Absolute URLs behind a real reverse proxy (nginx terminating TLS, rewriting Host, serving the
hub under a path), with the configured public URL, and with forwarding headers from a client
that is not a trusted proxy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from dicomweb_support import STOW_TYPE, multipart_body
from hubtest import HubServer, free_port, running_hub

from hub.config import Settings
from hub.security.tls import make_self_signed

SLIDE = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "dicom-wsi"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
RETRIEVE_URL, BULK = "00081190", "BulkDataURI"

CONFIG = """
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    client_max_body_size 0;
    location /pacs/ {{
      proxy_pass http://127.0.0.1:{hub_port}/;
      proxy_set_header Host hub.internal;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host $host:$server_port;
      proxy_set_header X-Forwarded-Prefix /pacs;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"""


def _urls(rows: list[dict]) -> list[str]:
    """Every RetrieveURL and BulkDataURI in DICOM JSON rows, nested ones included."""
    found: list[str] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == BULK:
                    found.append(item)
                elif key == RETRIEVE_URL:
                    found.extend(item.get("Value", []))
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(rows)
    return found


@contextlib.asynccontextmanager
async def nginx_in_front(hub_port: int, tmp: Path) -> AsyncIterator[str]:
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (make system-deps installs it)")
    cert, key = make_self_signed(tmp / "tls")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        CONFIG.format(
            user="user root;" if os.geteuid() == 0 else "",
            tmp=tmp,
            port=port,
            cert=cert,
            key=key,
            hub_port=hub_port,
        )
    )
    proc = await asyncio.create_subprocess_exec(
        NGINX, "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"
    )
    try:
        await _wait_for_port(port, proc)
        yield f"https://localhost:{port}/pacs"
    finally:
        proc.terminate()
        await proc.wait()


async def _wait_for_port(port: int, proc) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("nginx did not start listening")


async def _store_and_collect(hub: HubServer, base: str) -> list[str]:
    """Store the corpus slide through `base`, then every URL its answers give."""
    no_verify = ssl.create_default_context()
    no_verify.check_hostname, no_verify.verify_mode = False, ssl.CERT_NONE
    bodies = [("application/dicom", p.read_bytes()) for p in sorted(SLIDE.glob("boxes_*.dcm"))]
    urls: list[str] = []
    async with aiohttp.ClientSession(
        headers=hub.admin_headers, connector=aiohttp.TCPConnector(ssl=no_verify)
    ) as session:
        async with session.post(
            base + "/dicomweb/studies",
            data=multipart_body(bodies),
            headers={"Content-Type": STOW_TYPE},
        ) as r:
            assert r.status == 200, await r.text()
            urls += _urls([await r.json(content_type=None)])
        for path in ("/studies", "/series", "/instances"):
            async with session.get(base + "/dicomweb" + path) as r:
                assert r.status == 200
                urls += _urls(await r.json())
        async with session.get(base + "/dicomweb/studies") as r:
            (study,) = await r.json()
        async with session.get(study[RETRIEVE_URL]["Value"][0] + "/metadata") as r:
            assert r.status == 200, (r.url, await r.text())
            metadata = await r.json()
        bulk = _urls(metadata)
        assert any(u.endswith("/bulkdata/7FE00010") for u in bulk)
        urls += bulk
        async with session.get(bulk[0]) as r:  # the URLs lead back through the proxy
            assert r.status == 200
    return urls


@pytest.mark.peers
async def test_urls_point_at_the_proxy(settings: Settings, tmp_path: Path) -> None:
    settings.trusted_proxies = ["127.0.0.1/32", "::1"]
    async with (
        running_hub(settings) as hub,
        nginx_in_front(settings.port, tmp_path / "nginx") as public,
    ):
        urls = await _store_and_collect(hub, public)
    assert len(urls) > 6
    wrong = [u for u in urls if not u.startswith(public + "/dicomweb/")]
    assert wrong == []


async def test_public_url_wins(settings: Settings) -> None:
    settings.public_url = "https://pacs.example.org/imaging/"
    async with running_hub(settings) as hub, hub.session() as session:
        async with session.post(
            hub.url + "/dicomweb/studies",
            data=multipart_body([("application/dicom", (SLIDE / "boxes_0.dcm").read_bytes())]),
            headers={"Content-Type": STOW_TYPE},
        ) as r:
            urls = _urls([await r.json(content_type=None)])
        async with session.get(hub.url + "/dicomweb/instances") as r:
            urls += _urls(await r.json())
    assert urls
    assert all(u.startswith("https://pacs.example.org/imaging/dicomweb/studies/") for u in urls)


async def test_forwarding_headers_from_others_mean_nothing(hub_server: HubServer) -> None:
    spoofed = {
        "X-Forwarded-Host": "evil.test",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Prefix": "/phish",
        "Forwarded": "host=evil.test;proto=https",
    }
    async with hub_server.session() as session:
        async with session.post(
            hub_server.url + "/dicomweb/studies",
            data=multipart_body([("application/dicom", (SLIDE / "boxes_0.dcm").read_bytes())]),
            headers={"Content-Type": STOW_TYPE, **spoofed},
        ) as r:
            urls = _urls([await r.json(content_type=None)])
        async with session.get(hub_server.url + "/dicomweb/studies", headers=spoofed) as r:
            urls += _urls(await r.json())
    assert urls
    assert all(u.startswith(hub_server.url + "/dicomweb/") for u in urls)


def test_bad_settings_are_named(monkeypatch) -> None:
    from hub.forwarded import networks

    monkeypatch.setenv("TESSERA_PUBLIC_URL", "pacs.example.org")
    with pytest.raises(ValueError, match="public_url"):
        Settings.from_env()
    with pytest.raises(ValueError, match="trusted_proxies: 'proxy.local'"):
        networks(["10.0.0.0/8", "proxy.local"])
