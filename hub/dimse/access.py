"""Who a calling AE is, and whether it may use a service: the security package's allow-list.

Deny by default. An AE that is not on the list (``tessera ae allow``) may still associate and
C-ECHO, but every C-STORE, C-FIND, C-MOVE, C-GET and worklist query it sends is answered
0x0124 "Refused: Not Authorized" with the reason in ErrorComment. Refusing per request rather
than rejecting the association or its presentation contexts is deliberate: modalities propose
Verification, Storage and Worklist in one association, and many report a rejected association
or context only as a vague "no presentation context" (or retry it forever), while a refusal
status with a comment shows up in their logs and queues as what it is; C-ECHO keeps working so
the link itself can be tested before the AE is allowed. (The association-level list
``dimse_allowed_aes``, checked by pynetdicom first, rejects whole associations.)

An allowed AE is resolved once per association to an ``AeGrant``: the principal it acts as
(its role's read scope then limits its queries and retrievals), and its services.
"""

from __future__ import annotations

import hashlib
import logging
import ssl

from cryptography import x509
from pydicom import Dataset
from pynetdicom.events import Event

from hub.dimse.bridge import LoopBridge
from hub.dimse.status import NOT_AUTHORIZED, status
from hub.security.accounts import Principal
from hub.security.dimse_acl import AeGrant, Peer, resolve

log = logging.getLogger(__name__)

GRANT = "_tessera_grant"
_UNRESOLVED = object()


class NotAuthorized(Exception):
    """The calling AE may not use the service; ``status`` is the answer (0x0124)."""

    def __init__(self, status: Dataset) -> None:
        super().__init__(str(status.get("ErrorComment", "")))
        self.status = status


def peer_of(event: Event) -> Peer:
    """The calling AE, its address and, over TLS, its verified client certificate."""
    requestor = event.assoc.requestor
    sock = getattr(event.assoc.dul.socket, "socket", None)
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    subject = x509.load_der_x509_certificate(der).subject.rfc4514_string() if der else None
    return Peer(
        ae_title=str(requestor.ae_title).strip(),
        address=str(requestor.address),
        cert_sha256=hashlib.sha256(der).hexdigest() if der else None,
        cert_subject=subject,
    )


class AccessPolicy:
    def __init__(self, archive, bridge: LoopBridge) -> None:
        self.archive = archive
        self.bridge = bridge

    def grant(self, event: Event) -> AeGrant | None:
        """The association's grant, looked up on its first request (None: not allowed)."""
        assoc = event.assoc
        grant = getattr(assoc, GRANT, _UNRESOLVED)
        if grant is _UNRESOLVED:
            grant = self.bridge.call(resolve(self.archive.engine, peer_of(event)))
            setattr(assoc, GRANT, grant)
        return grant  # type: ignore[return-value]

    def authorize(self, event: Event, service: str) -> Principal:
        """The principal the calling AE acts as; raises NotAuthorized if it may not."""
        grant = self.grant(event)
        if grant is not None and grant.may(service):
            return grant.principal
        calling = str(event.assoc.requestor.ae_title).strip()
        if grant is None:
            log.info("DIMSE: %s refused to %s, which is not on the allow-list", service, calling)
            raise NotAuthorized(status(NOT_AUTHORIZED, f"AE {calling} not allowed: {service}"))
        log.info("DIMSE: %s refused to %s (as %s)", service, calling, grant.principal.user)
        raise NotAuthorized(status(NOT_AUTHORIZED, f"AE {calling} may not use {service}"))
