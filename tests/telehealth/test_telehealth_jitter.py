"""The marker-completing video jitter buffer, on real aiortc RTP packets and receivers."""

from __future__ import annotations

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from telehealth.ice import rtc_configuration
from telehealth.jitter import MarkerJitterBuffer, use_marker_completion


def _packet(seq: int, timestamp: int, payload: bytes, marker: bool = False) -> RtpPacket:
    packet = RtpPacket(
        payload_type=96, sequence_number=seq, timestamp=timestamp, marker=int(marker)
    )
    packet._data = payload  # what aiortc's receiver sets after depayloading
    return packet


def test_a_frame_is_handed_on_at_its_marked_last_packet() -> None:
    buffer = MarkerJitterBuffer(capacity=128, is_video=True)
    assert buffer.add(_packet(10, 3000, b"a"))[1] is None
    assert buffer.add(_packet(11, 3000, b"b"))[1] is None
    frame = buffer.add(_packet(12, 3000, b"c", marker=True))[1]
    assert (frame.data, frame.timestamp) == (b"abc", 3000)
    # aiortc's own buffer would still be waiting for the next frame's first packet
    plain = JitterBuffer(capacity=128, is_video=True)
    for seq, data, marker in ((10, b"a", False), (11, b"b", False), (12, b"c", True)):
        assert plain.add(_packet(seq, 3000, data, marker))[1] is None


def test_reordered_packets_complete_the_frame_when_the_gap_fills() -> None:
    buffer = MarkerJitterBuffer(capacity=128, is_video=True)
    assert buffer.add(_packet(20, 6000, b"a"))[1] is None
    assert buffer.add(_packet(22, 6000, b"c", marker=True))[1] is None  # 21 still missing
    _, frame = buffer.add(_packet(21, 6000, b"b"))
    assert (frame.data, frame.timestamp) == (b"abc", 6000)
    _, frame = buffer.add(_packet(23, 9000, b"d", marker=True))
    assert (frame.data, frame.timestamp) == (b"d", 9000)


def test_a_frame_with_a_lost_packet_is_not_handed_on_at_its_marker() -> None:
    buffer = MarkerJitterBuffer(capacity=128, is_video=True)
    buffer.add(_packet(30, 3000, b"a"))
    assert buffer.add(_packet(32, 3000, b"c", marker=True))[1] is None


async def test_the_buffer_is_swapped_only_in_a_fresh_video_receiver() -> None:
    pc = RTCPeerConnection(rtc_configuration())
    try:
        video = pc.addTransceiver("video", direction="recvonly").receiver
        audio = pc.addTransceiver("audio", direction="recvonly").receiver
        assert use_marker_completion(video) is True
        assert isinstance(video._RTCRtpReceiver__jitter_buffer, MarkerJitterBuffer)
        assert use_marker_completion(audio) is False
        assert use_marker_completion(video) is False  # already swapped
    finally:
        await pc.close()
