"""Every library internal our code relies on, checked against the installed libraries.

pyproject.toml allows only the pynetdicom, aiortc and aioice releases these modules were
written for; this is what an upgrade has to pass. Each entry names the file of ours that
would break (or silently fall back to the library's stock behaviour). The tests at the end
check, on real associations and peer connections, that the patches that can fall back did
not: they are in effect with the installed versions.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioice
import pynetdicom.association
import pynetdicom.dimse_messages
import pynetdicom.dul
import pytest
from aiortc import RTCPeerConnection
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import CTImageStorage

from hub.archive.blobs.local import LocalBlobStore
from hub.archive.blobs.spool import FileSpool
from hub.dimse import receive, scu, wakeups
from hub.dimse.config import UNCOMPRESSED
from hub.dimse.guard import guard_decoding
from telehealth import ice, jitter

WAKEUPS = "hub/dimse/wakeups.py"
RECEIVE = "hub/dimse/receive.py"
GUARD = "hub/dimse/guard.py"
ADMISSION = "hub/dimse/admission.py"
SCU = "hub/dimse/scu.py"
SERVICE = "hub/dimse/service.py"
DIMSE_CONFIG = "hub/dimse/config.py"
DIMSE_SENDER = "hub/forward/dimse_sender.py"
PARSE = "hub/archive/parse.py"
DICOMJSON = "hub/archive/dicomjson.py"
STOW = "hub/dicomweb/stow.py"
JOBS = "hub/jobs/runner.py"
ICE = "telehealth/ice.py"
JITTER = "telehealth/jitter.py"
SESSION = "telehealth/session.py"
CONNLIMITS = "hub/serve/connlimits.py"
BODYRATE = "hub/serve/bodyrate.py"

CT = Path(get_testdata_file("CT_small.dcm"))


def at(path: str) -> Callable[[], Any]:
    """``module:Dotted.name`` (or just ``module``), looked up when the check runs."""

    def get() -> Any:
        module, _, name = path.partition(":")
        found: Any = importlib.import_module(module)
        for part in filter(None, name.split(".")):
            found = getattr(found, part)
        return found

    return get


def acceptor() -> Association:
    """An association as the SCP makes one for each connection, before its threads start."""
    return Association(AE(), "acceptor")


@dataclass(frozen=True)
class Internal:
    ours: str  # the file of ours that relies on it
    name: str  # the library's name for it
    get: Callable[[], Any]  # the object itself (a module, class, function or fresh instance)
    attributes: tuple[str, ...] = ()  # it must have these
    parameters: tuple[str, ...] = ()  # its signature must have these
    source: tuple[str, ...] = ()  # its code must contain these: how the library uses it

    def problems(self) -> list[str]:
        try:
            found = self.get()
        except (ImportError, AttributeError) as exc:
            return [f"it is gone ({exc})"]
        fields = getattr(found, "__dataclass_fields__", {})
        missing = [a for a in self.attributes if not hasattr(found, a) and a not in fields]
        problems = [f"no attribute {a!r}" for a in missing]
        if self.parameters:
            have = inspect.signature(found).parameters
            problems += [f"no parameter {p!r}" for p in self.parameters if p not in have]
        if self.source:
            code = inspect.getsource(found)
            problems += [f"its code no longer has {s!r}" for s in self.source if s not in code]
        return problems


INTERNALS = [
    # pynetdicom's reactors sleep through their modules' `time`, which wakeups.py replaces;
    # it rewires the queues that end those sleeps.
    Internal(WAKEUPS, "pynetdicom.dul.time", at("pynetdicom.dul"), attributes=("time",)),
    Internal(
        WAKEUPS,
        "pynetdicom.dul.DULServiceProvider.run_reactor",
        at("pynetdicom.dul:DULServiceProvider.run_reactor"),
        source=("time.sleep(",),
    ),
    Internal(
        WAKEUPS, "pynetdicom.association.time", at("pynetdicom.association"), attributes=("time",)
    ),
    Internal(
        WAKEUPS,
        "pynetdicom.association.Association._run_reactor",
        at("pynetdicom.association:Association._run_reactor"),
        source=("time.sleep(",),
    ),
    Internal(
        f"{WAKEUPS}, {ADMISSION}",
        "DULServiceProvider().to_provider_queue, .to_user_queue, .socket",
        lambda: acceptor().dul,
        attributes=("to_provider_queue", "to_user_queue", "socket"),
    ),
    Internal(
        WAKEUPS,
        "DIMSEServiceProvider().msg_queue",
        lambda: acceptor().dimse,
        attributes=("msg_queue",),
    ),
    Internal(
        f"{WAKEUPS}, {ADMISSION}, {SCU}",
        "pynetdicom.transport.AssociationSocket.socket",
        at("pynetdicom.transport:AssociationSocket.__init__"),
        source=("self.socket",),
    ),
    # receive.py gives the message decoder its own `_config` and `NamedTemporaryFile`.
    Internal(
        RECEIVE,
        "pynetdicom._config.STORE_RECV_CHUNKED_DATASET",
        at("pynetdicom._config"),
        attributes=("STORE_RECV_CHUNKED_DATASET",),
    ),
    Internal(
        RECEIVE,
        "pynetdicom.dimse_messages._config, .NamedTemporaryFile",
        at("pynetdicom.dimse_messages"),
        attributes=("_config", "NamedTemporaryFile"),
    ),
    Internal(
        RECEIVE,
        "pynetdicom.dimse_messages.DIMSEMessage.decode_msg",
        at("pynetdicom.dimse_messages:DIMSEMessage.decode_msg"),
        source=(
            "_config.STORE_RECV_CHUNKED_DATASET",
            "NamedTemporaryFile(",
            "._data_set_file.name",
            "._data_set_file.write(",
            "._data_set_file.file.flush()",
        ),
    ),
    Internal(
        RECEIVE, "pynetdicom.events.Event.dataset_path", at("pynetdicom.events:Event.dataset_path")
    ),
    # guard.py wraps the bound method on each association; the state machine must look it up
    # on the association at call time.
    Internal(
        GUARD,
        "pynetdicom.dimse.DIMSEServiceProvider.receive_primitive",
        at("pynetdicom.dimse:DIMSEServiceProvider.receive_primitive"),
        parameters=("primitive",),
    ),
    Internal(
        GUARD,
        "pynetdicom.fsm (P-DATA indication)",
        at("pynetdicom.fsm"),
        source=("dul.assoc.dimse.receive_primitive(",),
    ),
    Internal(
        GUARD,
        "pynetdicom.association.ServiceUser.address",
        at("pynetdicom.association:ServiceUser"),
        attributes=("address",),
    ),
    Internal(
        ADMISSION,
        "EVT_CONN_OPEN's address",
        at("pynetdicom.transport:RequestHandler.handle"),
        source=('evt.EVT_CONN_OPEN, {"address"',),
    ),
    # scu.py and the forwarder stream stored files; scu.py's send_c_store and associate
    # overrides must be what pynetdicom's C-GET and C-MOVE SCPs call.
    Internal(
        f"{SCU}, {DIMSE_SENDER}",
        "pynetdicom._config.STORE_SEND_CHUNKED_DATASET",
        at("pynetdicom._config"),
        attributes=("STORE_SEND_CHUNKED_DATASET",),
    ),
    Internal(
        f"{SCU}, {DIMSE_SENDER}",
        "pynetdicom.association.Association.send_c_store",
        at("pynetdicom.association:Association.send_c_store"),
        source=("_config.STORE_SEND_CHUNKED_DATASET",),
    ),
    Internal(
        SCU,
        "pynetdicom.service_class.QueryRetrieveServiceClass",
        at("pynetdicom.service_class:QueryRetrieveServiceClass"),
        source=("self.assoc.send_c_store(", "self.ae.associate("),
    ),
    Internal(DIMSE_SENDER, "Association().ae (a thread)", acceptor, attributes=("ae",)),
    Internal(
        DIMSE_SENDER,
        "DULServiceProvider().assoc (a thread)",
        lambda: acceptor().dul,
        attributes=("assoc",),
    ),
    # service.py's cheap copy of supported contexts.
    Internal(
        SERVICE,
        "pynetdicom.presentation.PresentationContext()._transfer_syntax",
        at("pynetdicom.presentation:PresentationContext"),
        source=("self._transfer_syntax",),
    ),
    # pydicom: a private module, and raw elements read without converting them.
    Internal(
        DIMSE_CONFIG,
        "pydicom._uid_dict.UID_dictionary",
        at("pydicom._uid_dict"),
        attributes=("UID_dictionary",),
    ),
    Internal(
        f"{PARSE}, {DICOMJSON}",
        "pydicom.dataelem.RawDataElement",
        at("pydicom.dataelem:RawDataElement"),
        attributes=("tag", "VR", "length", "value", "value_tell", "is_little_endian"),
    ),
    Internal(
        f"{PARSE}, {DICOMJSON}",
        "pydicom.dataset.Dataset.get_item",
        at("pydicom.dataset:Dataset.get_item"),
        parameters=("keep_deferred",),
    ),
    Internal(
        PARSE,
        "pydicom.filereader.read_partial",
        at("pydicom.filereader:read_partial"),
        parameters=("fileobj", "stop_when", "defer_size"),
    ),
    Internal(
        DICOMJSON,
        "pydicom.charset.default_encoding",
        at("pydicom.charset"),
        attributes=("default_encoding",),
    ),
    # aiohttp: a helper outside its documented API.
    Internal(
        STOW,
        "aiohttp.helpers.parse_mimetype",
        at("aiohttp.helpers:parse_mimetype"),
        parameters=("mimetype",),
    ),
    Internal(
        STOW,
        "aiohttp.helpers.MimeType",
        at("aiohttp.helpers:MimeType"),
        attributes=("type", "subtype", "parameters"),
    ),
    # aioice: the module-level function ice.py replaces, and its caller looking it up there.
    Internal(
        ICE,
        "aioice.ice.get_host_addresses",
        at("aioice.ice:get_host_addresses"),
        parameters=("use_ipv4", "use_ipv6"),
    ),
    Internal(
        ICE,
        "aioice.ice.Connection.gather_candidates",
        at("aioice.ice:Connection.gather_candidates"),
        source=("get_host_addresses(",),
    ),
    # aiortc: the receiver's name-mangled jitter buffer and the buffer's private state.
    Internal(
        JITTER,
        "aiortc.rtcrtpreceiver.RTCRtpReceiver.__jitter_buffer",
        at("aiortc.rtcrtpreceiver:RTCRtpReceiver"),
        source=(
            "self.__jitter_buffer = JitterBuffer(",
            "self.__jitter_buffer.add(packet)",
            "packet._data = ",
        ),
    ),
    Internal(
        JITTER,
        "aiortc.jitterbuffer.JitterBuffer",
        at("aiortc.jitterbuffer:JitterBuffer"),
        parameters=("capacity", "is_video"),
        attributes=("add", "remove", "capacity"),
    ),
    Internal(
        JITTER,
        "JitterBuffer()._origin, ._packets, ._is_video",
        lambda: importlib.import_module("aiortc.jitterbuffer").JitterBuffer(16, is_video=True),
        attributes=("_origin", "_packets", "_is_video"),
    ),
    Internal(
        JITTER,
        "aiortc.jitterbuffer.JitterBuffer.remove",
        at("aiortc.jitterbuffer:JitterBuffer.remove"),
        parameters=("count",),
    ),
    Internal(
        JITTER,
        "aiortc.jitterbuffer.JitterFrame",
        at("aiortc.jitterbuffer:JitterFrame"),
        parameters=("data", "timestamp"),
    ),
    Internal(
        JITTER,
        "RtpPacket().marker, .timestamp",
        lambda: importlib.import_module("aiortc.rtp").RtpPacket(),
        attributes=("marker", "timestamp"),
    ),
    Internal(
        SESSION,
        "aiortc.rtcrtptransceiver.RTCRtpTransceiver._offerDirection, ._codecs",
        at("aiortc.rtcrtptransceiver:RTCRtpTransceiver.__init__"),
        source=("self._offerDirection", "self._codecs"),
    ),
    Internal(
        SESSION,
        "aiortc.rtcrtpparameters.RTCRtpCodecParameters.mimeType",
        at("aiortc.rtcrtpparameters:RTCRtpCodecParameters"),
        attributes=("mimeType",),
    ),
    # connlimits.py serves aiohttp's own protocol through a site of its own, as SockSite does.
    Internal(
        CONNLIMITS,
        "aiohttp.web_runner.BaseSite._runner, ._ssl_context, ._backlog, ._server",
        at("aiohttp.web_runner:BaseSite.__init__"),
        source=("self._runner", "self._ssl_context", "self._backlog", "self._server"),
    ),
    Internal(
        CONNLIMITS,
        "aiohttp.web_runner.BaseSite.stop closes ._server",
        at("aiohttp.web_runner:BaseSite.stop"),
        source=("self._server.close()",),
    ),
    Internal(
        CONNLIMITS,
        "aiohttp.web_runner.BaseRunner.server",
        at("aiohttp.web_runner:BaseRunner"),
        attributes=("server",),
    ),
    # bodyrate.py ends the stream of a body that arrives too slowly, then the connection.
    Internal(
        BODYRATE,
        "aiohttp.streams.StreamReader.total_bytes, .set_exception, .is_eof",
        at("aiohttp.streams:StreamReader"),
        attributes=("set_exception", "is_eof"),
    ),
    Internal(
        BODYRATE,
        "aiohttp.streams.StreamReader.total_bytes",
        at("aiohttp.streams:StreamReader.__init__"),
        source=("self.total_bytes",),
    ),
    Internal(
        BODYRATE,
        "aiohttp.web_protocol.RequestHandler.force_close",
        at("aiohttp.web_protocol:RequestHandler"),
        attributes=("force_close",),
    ),
    # The standard library: no public way to stop a busy worker process.
    Internal(
        JOBS,
        "concurrent.futures.ProcessPoolExecutor._processes",
        at("concurrent.futures.process:ProcessPoolExecutor.__init__"),
        source=("self._processes",),
    ),
]


@pytest.mark.parametrize("internal", INTERNALS, ids=lambda i: i.name)
def test_the_internal_is_still_there(internal: Internal) -> None:
    problems = internal.problems()
    assert not problems, f"{internal.ours} relies on {internal.name}: {'; '.join(problems)}"


def test_uid_dictionary_entries_start_with_name_and_kind() -> None:
    from pydicom._uid_dict import UID_dictionary

    entry = UID_dictionary[CTImageStorage]
    assert entry[:2] == ("CT Image Storage", "SOP Class"), (
        f"{DIMSE_CONFIG} reads (name, kind) from pydicom's UID_dictionary; an entry is {entry!r}"
    )


def test_elements_read_from_a_file_stay_raw_until_used() -> None:
    ds = dcmread(CT)
    raw = ds.get_item(0x00100010, keep_deferred=True)  # Patient's Name, not accessed yet
    assert isinstance(raw, RawDataElement), (
        f"{DICOMJSON} reads pydicom's raw elements without converting them; got {type(raw)}"
    )


# -- the patches that fall back to the library's own behaviour are in effect ----------------


def test_the_dimse_patches_are_in_effect_on_a_real_association(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs", tmp_path / "tmp")
    streamed = receive.StreamedReceive(store)
    assert streamed.enabled, f"{RECEIVE} found pynetdicom's decoder changed and fell back"
    seen: dict[str, Any] = {}

    def on_open(event: evt.Event) -> None:
        seen["address"] = event.address

    def on_store(event: evt.Event) -> int:
        assoc = event.assoc
        seen["queues"] = {
            type(q)
            for q in (assoc.dul.to_provider_queue, assoc.dul.to_user_queue, assoc.dimse.msg_queue)
        }
        seen["waiters"] = (
            type(getattr(assoc.dul, wakeups.WAITER, None)),
            type(getattr(assoc, wakeups.WAITER, None)),
        )
        seen["decoder"] = assoc.dimse.receive_primitive.__qualname__
        seen["socket"] = assoc.dul.socket.socket
        seen["thread's ae"] = threading.current_thread().ae is scp
        seen["file"] = received = receive.take(event)
        if received is not None:
            seen["finished"] = received.finish()
            with received.reader() as f:
                seen["bytes"] = f.read()
            received.discard()
        return 0x0000

    scp = AE(ae_title="PATCHES")
    scp.add_supported_context(CTImageStorage, UNCOMPRESSED)
    handlers = [
        (evt.EVT_CONN_OPEN, wakeups.arm),
        (evt.EVT_CONN_CLOSE, wakeups.disarm),
        (evt.EVT_CONN_OPEN, streamed.arm),
        (evt.EVT_CONN_CLOSE, streamed.disarm),
        (evt.EVT_CONN_OPEN, guard_decoding),
        (evt.EVT_CONN_OPEN, on_open),
        (evt.EVT_C_STORE, on_store),
    ]
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    try:
        (result,) = scu.send_files([CT], "127.0.0.1", server.server_address[1], "PATCHES")
    finally:
        server.shutdown()

    assert result.status == 0x0000, result
    assert seen["address"][0] == "127.0.0.1"
    fell_back = f"{WAKEUPS} fell back to pynetdicom's polling"
    assert seen["queues"] == {wakeups._WakingQueue}, f"{fell_back}: queues {seen['queues']}"
    assert seen["waiters"] == (wakeups._SocketWaiter, wakeups._EventWaiter), fell_back
    for module in (pynetdicom.dul, pynetdicom.association):
        assert isinstance(module.time, wakeups._Clock), f"{fell_back}: {module.__name__}.time"
    assert isinstance(pynetdicom.dimse_messages._config, receive._Config), RECEIVE
    assert seen["decoder"].startswith("guard_decoding."), GUARD
    assert isinstance(seen["socket"], socket.socket), ADMISSION
    assert seen["thread's ae"], f"{DIMSE_SENDER}: pynetdicom's association thread has no .ae"
    assert seen["file"] is not None, f"{RECEIVE}: the data set was received in memory"
    assert isinstance(seen["file"], FileSpool), RECEIVE
    assert seen["file"].path.parent == store.tmp_dir, RECEIVE
    sha256, size = seen["finished"]
    stored = seen["bytes"]
    assert (hashlib.sha256(stored).hexdigest(), len(stored)) == (sha256, size), RECEIVE
    _, data_set_at = split_dataset(CT)
    assert stored.endswith(CT.read_bytes()[data_set_at:]), RECEIVE


async def test_loopback_host_candidates_are_gathered() -> None:
    ice.use_host_candidates("loopback")
    try:
        connection = aioice.Connection(ice_controlling=True, components=1)
        await asyncio.wait_for(connection.gather_candidates(), 60)
        hosts = [c.host for c in connection.local_candidates]
        await connection.close()
    finally:
        ice.use_host_candidates("auto")
    assert hosts == ["127.0.0.1"], f"{ICE}: aioice gathered {hosts}"


async def test_video_receivers_take_the_marker_jitter_buffer() -> None:
    pc = RTCPeerConnection(ice.rtc_configuration())
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        swapped = jitter.use_marker_completion(transceiver.receiver)
    finally:
        await pc.close()
    assert swapped, f"{JITTER} kept aiortc's jitter buffer"
