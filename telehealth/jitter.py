"""A video jitter buffer that hands a frame on at its last packet, not one frame later.

aiortc's ``JitterBuffer`` knows a frame is complete only when the first packet of the *next*
frame arrives (a new RTP timestamp), so every aiortc receiver holds each video frame for one
frame time (33 ms at 30 fps). The hub receives the clinic's video and sends it on, so this
wait is added to the guidance latency. Senders (browsers, aiortc) set the RTP marker bit on a
video frame's last packet (RFC 3550 5.1, RFC 7741 for VP8): when the packets from the buffer's
start up to a marked packet are all present and share one timestamp, the frame is complete.
Everything else (loss, reordering, PLI) stays aiortc's own logic.

aiortc has no option for this, so the receiver's buffer is swapped right after the track
appears (before any RTP arrives); ``use_marker_completion`` checks that the private attribute
is what it expects and otherwise leaves the receiver alone.
"""

from __future__ import annotations

import logging

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

log = logging.getLogger(__name__)
_BUFFER_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"


class MarkerJitterBuffer(JitterBuffer):
    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = super().add(packet)
        if frame is None:
            frame = self._marked_frame()
        return pli_flag, frame

    def _marked_frame(self) -> JitterFrame | None:
        """The frame at the buffer's start, if all its packets up to a marked one are here."""
        if self._origin is None:
            return None
        packets: list[RtpPacket] = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                return None
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                data = b"".join(p._data for p in packets)  # type: ignore[attr-defined]
                return JitterFrame(data=data, timestamp=packets[0].timestamp)
        return None


def use_marker_completion(receiver: RTCRtpReceiver) -> bool:
    current = getattr(receiver, _BUFFER_ATTRIBUTE, None)
    if type(current) is not JitterBuffer or not getattr(current, "_is_video", False):
        log.info("aiortc's video jitter buffer is not where expected; keeping it")
        return False
    if current._origin is not None:  # packets already arrived: too late to swap safely
        return False
    setattr(receiver, _BUFFER_ATTRIBUTE, MarkerJitterBuffer(current.capacity, is_video=True))
    return True
