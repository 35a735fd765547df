"""Accept-header negotiation for WADO-RS (PS3.18 8.7): media types and transfer syntaxes."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import UID, ExplicitVRLittleEndian

from hub.archive.errors import NotAcceptable

ANY_TS = "*"
DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
# What a decoded frame or instance is sent as; nothing is transcoded to another compressed syntax.
DECODED_TS = ExplicitVRLittleEndian
RENDERED_TYPES = ("image/jpeg", "image/png")  # the first is the default
# Pixel data stored in these transfer syntaxes goes, as stored, under these media types.
IMAGE_TYPES: dict[str, set[str]] = {
    "image/jpeg": {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
    },
    "image/jls": {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"},
    "image/jp2": {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"},
    "image/jphc": {"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"},
    "image/x-dicom-rle": {"1.2.840.10008.1.2.5"},
}


@dataclass(frozen=True)
class Choice:
    media_type: str
    transfer_syntax: str  # what the client gets
    multipart: bool
    decode: bool  # True when the stored bytes must be decoded first


@dataclass(frozen=True)
class Offer:
    media_type: str
    params: dict[str, str]
    q: float


def parse_accept(header: str | None) -> list[Offer]:
    offers = []
    for raw in (header or "*/*").split(","):
        if not raw.strip():
            continue
        pieces = [p.strip() for p in _split_params(raw)]
        params: dict[str, str] = {}
        for p in pieces[1:]:
            name, _, value = p.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        q = _float(params.pop("q", "1"))
        offers.append(Offer(pieces[0].lower(), params, q))
    return sorted(offers, key=lambda o: -o.q)


def _split_params(raw: str) -> list[str]:
    """Split on ';' outside quotes (type="application/dicom" may hold none, but be safe)."""
    out, cur, quoted = [], [], False
    for ch in raw:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 1.0


def _stored_media_type(stored_ts: str) -> str:
    for media_type, syntaxes in IMAGE_TYPES.items():
        if stored_ts in syntaxes:
            return media_type
    return OCTET_STREAM


def _inner(offer: Offer) -> tuple[str, bool]:
    if offer.media_type == "multipart/related":
        return offer.params.get("type", OCTET_STREAM).lower(), True
    return offer.media_type, False


def negotiate_frames(accept: str | None, stored_ts: str, count: int) -> Choice:
    """Choose how to send pixel data frames stored in `stored_ts`."""
    stored_type = _stored_media_type(stored_ts)
    native_stored = not UID(stored_ts).is_compressed
    for offer in parse_accept(accept):
        inner, multipart = _inner(offer)
        ts = offer.params.get("transfer-syntax")
        if not multipart and count > 1 and inner != "*/*":
            continue  # several frames need a multipart body
        if inner in ("*/*", "multipart/*") or (
            inner == stored_type and ts in (None, ANY_TS, stored_ts)
        ):
            return Choice(stored_type, stored_ts, multipart or count > 1, decode=False)
        if inner == OCTET_STREAM:
            if ts in (ANY_TS, stored_ts) or (ts is None and native_stored):
                return Choice(inner, stored_ts, multipart, decode=False)
            if ts in (None, DECODED_TS):
                return Choice(inner, DECODED_TS, multipart, decode=True)
    raise NotAcceptable(
        f"Frames are stored as {stored_ts} ({stored_type}); they can be sent as that, "
        f"or decoded as {OCTET_STREAM} with transfer-syntax={DECODED_TS}"
    )


def negotiate_instances(accept: str | None, stored_ts: str) -> Choice:
    for offer in parse_accept(accept):
        inner, _ = _inner(offer)
        if inner not in (DICOM, "*/*", "multipart/*"):
            continue
        ts = offer.params.get("transfer-syntax")
        if ts in (None, ANY_TS, stored_ts):
            return Choice(DICOM, stored_ts, True, decode=False)
        if ts == DECODED_TS:
            return Choice(DICOM, ts, True, decode=True)
    raise NotAcceptable(
        f"Instances are stored as {stored_ts}; ask for that, transfer-syntax=*, "
        f"or {DECODED_TS} (decoded)"
    )


def negotiate_bulkdata(accept: str | None) -> bool:
    """Whether a bulk data value (other than Pixel Data) goes as multipart/related, the default
    (PS3.18 8.7.3.5), or as a single application/octet-stream body."""
    for offer in parse_accept(accept):
        inner, multipart = _inner(offer)
        if offer.media_type in ("*/*", "multipart/*"):
            return True
        if inner in (OCTET_STREAM, "*/*"):
            return multipart
    raise NotAcceptable(f"Bulk data is available as {OCTET_STREAM}, alone or in multipart/related")


def wants_rendered(accept: str | None) -> str:
    for offer in parse_accept(accept):
        if offer.media_type in RENDERED_TYPES:
            return offer.media_type
        if offer.media_type in ("image/*", "*/*"):
            return RENDERED_TYPES[0]
    raise NotAcceptable(f"Rendered resources are available as {' or '.join(RENDERED_TYPES)}")
