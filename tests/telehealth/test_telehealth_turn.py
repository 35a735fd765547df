"""Sessions through a real coturn relay, every party relay-only: the hub's aiortc and the
clinic's and specialist's aiortc peers reach each other only through TURN allocations, over
UDP, TCP and TLS. Credentials are the hub's short-lived ones (TURN REST API scheme)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from coturn_support import Coturn, available, relay_settings, running_coturn, selected_pair
from telehealth_support import (
    CineTrack,
    Hub,
    Peer,
    audio_track,
    cine_frames,
    join_session,
    running_hub,
    start_session,
)

from hub.config import Settings, SettingsError
from telehealth.ice import has_relay_candidate
from telehealth.routes import REGISTRY_KEY
from telehealth.turn_credentials import mint

needs_coturn = pytest.mark.skipif(not available(), reason="coturn (turnserver) is not installed")


def configuration(ice: dict[str, Any]) -> RTCConfiguration:
    """What a browser does with the hub's ICE answer, for an aiortc peer."""
    return RTCConfiguration(
        iceServers=[RTCIceServer(**server) for server in ice["iceServers"]],
        iceTransportPolicy=RTCIceTransportPolicy(ice["iceTransportPolicy"]),
    )


async def ice_for(http: aiohttp.ClientSession, hub: Hub, session: dict, role: str) -> dict:
    token = session["clinic_token" if role == "clinic" else "specialist_token"]
    url = f"{hub.url}/api/telehealth/sessions/{session['id']}/ice"
    headers = {**hub.headers[role], "X-Telehealth-Token": token}
    async with http.get(url, headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Cache-Control"] == "no-store"
        return await r.json()


def relayed_peer(hub: Hub, session: dict, role: str, ice: dict) -> Peer:
    peer = hub.peer(session, role)
    peer.pc = RTCPeerConnection(configuration(ice))
    return peer


async def gathers_relay(ice_servers: list[dict[str, Any]]) -> bool:
    pc = RTCPeerConnection(
        configuration({"iceServers": ice_servers, "iceTransportPolicy": "relay"})
    )
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        return has_relay_candidate(pc.localDescription.sdp)
    finally:
        await pc.close()


def relayed_bytes(turn: Coturn, user: str) -> int:
    """Bytes coturn logged as relayed for ``user``'s allocations (logged as each one ends)."""
    pattern = re.compile(rf"username=<\d+:{re.escape(user)}>, rp=\d+, rb=(\d+), sp=\d+, sb=(\d+)")
    return sum(int(rb) + int(sb) for rb, sb in pattern.findall(turn.log_text()))


async def until_relayed(turn: Coturn, user: str, at_least: int, limit: float = 60) -> None:
    try:
        async with asyncio.timeout(limit):
            while relayed_bytes(turn, user) < at_least:
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(
            f"coturn relayed {relayed_bytes(turn, user)} bytes for {user}"
        ) from None


@needs_coturn
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_a_session_through_the_relay(
    tmp_path: Path, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_coturn(tmp_path / "turn") as turn:
        if transport == "tls":
            # The hub's TURN-over-TLS client verifies the server against the system trust
            # store; this test's self-signed certificate is made that trust store.
            monkeypatch.setenv("SSL_CERT_FILE", str(turn.cert))
        async with (
            running_hub(tmp_path / "data", **relay_settings(turn, transport)) as hub,
            aiohttp.ClientSession() as http,
        ):
            session = await start_session(http, hub)
            joined = await join_session(http, hub, session["invite_code"])
            clinic_ice = await ice_for(http, hub, session, "clinic")
            assert clinic_ice["iceTransportPolicy"] == "relay"
            stun_server, turn_server = clinic_ice["iceServers"]
            assert stun_server == {"urls": [turn.stun_url]}
            assert turn_server["urls"] == [turn.url(transport)]
            assert turn.secret not in str(clinic_ice)
            expires, user = turn_server["username"].split(":")
            assert user == f"{session['id']}.clinic"
            assert time.time() < int(expires) <= time.time() + 3600

            clinic = relayed_peer(hub, session, "clinic", clinic_ice)
            specialist_ice = await ice_for(http, hub, joined, "specialist")
            specialist = relayed_peer(hub, joined, "specialist", specialist_ice)
            try:
                await clinic.connect(CineTrack(cine_frames()), audio_track())
                await specialist.connect(audio_track(), receive_video=True)
                await specialist.wait_video(30)
                await clinic.wait_audio(10)
                live = hub.app[REGISTRY_KEY].get(session["id"])
                for peer in (clinic, specialist):
                    assert selected_pair(peer.pc) == ("relay", "relay")
                for hub_side in live.peers.values():
                    assert selected_pair(hub_side.pc) == ("relay", "relay")
            finally:
                await specialist.close()
                await clinic.close()
            # coturn itself accounts for the media: the clinic's allocation relayed it.
            await until_relayed(turn, f"{session['id']}.clinic", at_least=100_000)


@needs_coturn
async def test_the_relay_refuses_expired_and_wrong_credentials(tmp_path: Path) -> None:
    async with running_coturn(tmp_path / "turn") as turn:
        url = turn.url("udp")

        def servers(secret: str, ttl: int, now: float | None = None) -> list[dict[str, Any]]:
            c = mint(secret, "session.clinic", ttl, now)
            return [{"urls": [url], "username": c.username, "credential": c.credential}]

        assert await gathers_relay(servers(turn.secret, 600))
        assert not await gathers_relay(servers(turn.secret, 600, now=time.time() - 1200))
        assert not await gathers_relay(servers("not-the-secret", 600))


@needs_coturn
async def test_a_hub_that_cannot_reach_the_relay_says_so(tmp_path: Path) -> None:
    async with (
        running_coturn(tmp_path / "turn") as turn,
        running_hub(tmp_path / "data", **relay_settings(turn, "udp", secret="wrong")) as hub,
        aiohttp.ClientSession() as http,
    ):
        session = await start_session(http, hub)
        # Host candidates only: it is the hub that lacks a relay.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.addTrack(CineTrack(cine_frames()))
            await pc.setLocalDescription(await pc.createOffer())
            url = f"{hub.url}/api/telehealth/sessions/{session['id']}/signal"
            params = {"token": session["clinic_token"]}
            async with http.ws_connect(url, params=params, headers=hub.headers["clinic"]) as ws:
                assert (await ws.receive_json(timeout=60))["type"] == "state"
                await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
                reply = await ws.receive_json(timeout=60)
            assert reply["type"] == "error"
            assert "could not reach the relay" in reply["message"]
            assert not hub.app[REGISTRY_KEY].get(session["id"]).peers
        finally:
            await pc.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ice_transport_policy": "nearest"}, "ice_transport_policy: must be one of"),
        ({"ice_transport_policy": "relay"}, '"relay" needs turn_urls'),
        ({"turn_urls": ["turn:relay.example.org:3478"]}, "turn_urls need turn_secret"),
        ({"turn_urls": ["http://relay.example.org"], "turn_secret": "s"}, "is not a turn:"),
        ({"stun_urls": ["turn:relay.example.org"]}, "is not a stun:"),
        ({"turn_credential_seconds": 5}, "turn_credential_seconds must be between"),
    ],
)
def test_ice_settings_are_checked(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as refused:
        Settings.from_env({"TESSERA_EXTRA": json.dumps({"telehealth": change})})
    assert refused.value.key.startswith("TESSERA_EXTRA telehealth")


async def test_credentials_go_to_a_signed_in_side_of_the_session_only(tmp_path: Path) -> None:
    relay = {"turn_urls": ["turn:relay.example.org:3478?transport=udp"], "turn_secret": "s3cret"}
    async with (
        running_hub(tmp_path / "data", **relay) as hub,
        aiohttp.ClientSession() as http,
    ):
        session = await start_session(http, hub)
        url = f"{hub.url}/api/telehealth/sessions/{session['id']}/ice"
        token = {"X-Telehealth-Token": session["clinic_token"]}
        async with http.get(url, headers=token) as r:
            assert r.status == 401  # no login
        async with http.get(url, headers=hub.headers["clinic"]) as r:
            assert r.status == 403  # no session token
            assert "session token" in (await r.json())["detail"]
        async with http.get(url, headers={**hub.headers["clinic"], **token}) as r:
            assert r.status == 200
            (server,) = (await r.json())["iceServers"]
        assert server["urls"] == relay["turn_urls"]
        assert server["username"].endswith(f":{session['id']}.clinic")
        assert "s3cret" not in server.values()
