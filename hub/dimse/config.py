"""DIMSE settings: what the SCP accepts and where C-MOVE may send.

Read from ``Settings`` (``dimse_port``, ``ae_title``, ``host``) and its ``dimse`` section,
``hub.config.DimseSettings`` (who may use which service is not a setting: see ``tessera ae
allow`` and hub.dimse.access). In ``TESSERA_EXTRA`` each field is also a flat ``dimse_<name>``
key:

``dimse_allowed_aes``        list of calling AE titles allowed to associate; empty = everyone
``dimse_transfer_syntaxes``  list of transfer syntax UIDs accepted for storage (default: all of
                             ``DEFAULT_TRANSFER_SYNTAXES``; uncompressed ones are always kept)
``dimse_move_destinations``  the C-MOVE destinations the index's peers start from (see
                             hub.dimse.peers): {AE title: [host, port]}, or {AE title: {"host": ...,
                             "port": ..., "tls": true or {"ca_file", "cert_file", "key_file",
                             "verify"}}} for a destination that takes DICOM over TLS
``dimse_tls``                {"cert": path, "key": path, "ca": path or absent}: DICOM over TLS
                             on the DIMSE port (with "ca", peers need a certificate it issued)
``dimse_max_associations``   concurrent associations (default 16)
``dimse_timeout``            seconds for network and archive calls (default 60)
``dimse_setup_timeout``      seconds a new connection has to ask for an association, TLS
                             handshake included (default 10)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom import uid
from pydicom._uid_dict import UID_dictionary
from pynetdicom import AllStoragePresentationContexts, register_uid, sop_class
from pynetdicom.service_class import StorageServiceClass

from hub.config import DimseSettings, Settings
from hub.security.tls import ClientTls

UNCOMPRESSED = [
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
]

# Everything a modality or a PACS is likely to send, in the order the SCP prefers when one
# presentation context offers several: lossless compressed first (a sender holding such
# files can send them as they are; dcmtk cannot decompress JPEG 2000, for one), then
# uncompressed, then lossy and video last, so that choosing never makes a sender compress
# lossily what it holds uncompressed.
LOSSLESS_COMPRESSED = [
    uid.JPEG2000Lossless,
    uid.JPEG2000MCLossless,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.JPEGLosslessSV1,
    uid.JPEGLossless,
    uid.JPEGLSLossless,
    uid.RLELossless,
    uid.DeflatedExplicitVRLittleEndian,
]
LOSSY = [
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLSNearLossless,
    uid.JPEG2000,
    uid.JPEG2000MC,
    uid.HTJ2K,
    uid.MPEG2MPML,
    uid.MPEG2MPMLF,
    uid.MPEG2MPHL,
    uid.MPEG2MPHLF,
    uid.MPEG4HP41,
    uid.MPEG4HP41F,
    uid.MPEG4HP41BD,
    uid.MPEG4HP41BDF,
    uid.MPEG4HP422D,
    uid.MPEG4HP422DF,
    uid.MPEG4HP423D,
    uid.MPEG4HP423DF,
    uid.MPEG4HP42STEREO,
    uid.MPEG4HP42STEREOF,
    uid.HEVCMP51,
    uid.HEVCM10P51,
]
DEFAULT_TRANSFER_SYNTAXES = [*LOSSLESS_COMPRESSED, *UNCOMPRESSED, *LOSSY]


def _tls(value) -> dict | None:
    if not value:
        return None
    if not isinstance(value, dict) or not value.get("cert") or not value.get("key"):
        raise DimseConfigError('dimse_tls needs {"cert": path, "key": path} (and optional "ca")')
    return value


def storage_sop_classes() -> list[str]:
    """Every storage SOP class: pynetdicom's, plus the retired and trial ones pydicom names.

    Those pynetdicom does not know are registered with its Storage service class so that a
    C-STORE of, say, the retired Ultrasound Image Storage is handled like any other.
    """
    known = [cx.abstract_syntax for cx in AllStoragePresentationContexts]
    extra = []
    for value, entry in UID_dictionary.items():
        name, kind = entry[0], entry[1]
        if kind != "SOP Class" or "Storage" not in name or value in known:
            continue
        if "Commitment" in name or "Media Storage Directory" in name:
            continue
        extra.append(value)
        keyword = "Tessera" + "".join(ch for ch in name.title() if ch.isalnum())
        if not hasattr(sop_class, keyword):
            register_uid(value, keyword, StorageServiceClass)
    return known + extra


@dataclass(frozen=True)
class MoveDestination:
    host: str
    port: int
    tls: ClientTls | None = None

    @classmethod
    def from_setting(cls, ae: str, where: object) -> MoveDestination:
        try:
            if isinstance(where, dict):
                tls = ClientTls.from_setting(where.get("tls"))
                return cls(str(where["host"]), int(where["port"]), tls)
            host, port = where  # type: ignore[misc]
            return cls(str(host), int(port))
        except (KeyError, TypeError, ValueError) as exc:
            raise DimseConfigError(
                f"move destination {ae}: expected [host, port] or {{host, port, tls}}"
            ) from exc


def move_destinations(given: DimseSettings) -> dict[str, MoveDestination]:
    """The settings' C-MOVE destinations: what fills the index's peers on the first start
    (hub.dimse.peers), which count from then on."""
    return {
        str(ae).strip(): MoveDestination.from_setting(ae, where)
        for ae, where in given.move_destinations.items()
    }


class DimseConfigError(ValueError):
    """A DIMSE setting that cannot be used; raised at start-up."""


@dataclass
class DimseConfig:
    ae_title: str
    host: str
    port: int
    allowed_aes: list[str] = field(default_factory=list)
    transfer_syntaxes: list[str] = field(default_factory=lambda: list(DEFAULT_TRANSFER_SYNTAXES))
    move_destinations: dict[str, MoveDestination] = field(default_factory=dict)
    max_associations: int = 16
    timeout: float = 60.0
    setup_timeout: float = 10.0
    tls: dict | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DimseConfig:
        given = settings.dimse
        if settings.dimse_port is None:
            raise DimseConfigError("Settings.dimse_port is not set")
        syntaxes = list(given.transfer_syntaxes or DEFAULT_TRANSFER_SYNTAXES)
        unknown = [s for s in syntaxes if not uid.UID(s).is_transfer_syntax]
        if unknown:
            raise DimseConfigError(f"not transfer syntaxes: {', '.join(unknown)}")
        # Uncompressed syntaxes stay: without them nothing can negotiate a query or a store.
        syntaxes += [s for s in UNCOMPRESSED if s not in syntaxes]
        return cls(
            ae_title=settings.ae_title,
            host=settings.host,
            port=int(settings.dimse_port),
            allowed_aes=[a.strip() for a in given.allowed_aes],
            transfer_syntaxes=syntaxes,
            move_destinations=move_destinations(given),
            max_associations=given.max_associations,
            timeout=given.timeout,
            setup_timeout=given.setup_timeout,
            tls=_tls(given.tls),
        )
