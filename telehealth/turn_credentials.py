"""Short-lived TURN credentials, the TURN REST API's shared-secret scheme.

The hub and the TURN server share one secret (coturn: ``use-auth-secret`` with
``static-auth-secret``). The hub mints, per session and side, a username that carries its own
expiry time and a password that is the secret's HMAC-SHA1 of that username; the TURN server
recomputes the HMAC and refuses the username once its time has passed. The secret itself never
leaves the hub. The scheme is specified in draft-uberti-behave-turn-rest-00 section 2.2.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

# coturn's default rest-api-separator is ":", so the user part must not contain one.
USER_PART = re.compile(r"[A-Za-z0-9._\-]{1,128}")


@dataclass(frozen=True)
class TurnCredential:
    username: str
    credential: str
    expires: int  # Unix time after which the TURN server refuses the username


def mint(secret: str, user: str, ttl_seconds: int, now: float | None = None) -> TurnCredential:
    """A credential for ``user`` (e.g. "<session>.clinic") valid for ``ttl_seconds``."""
    if not secret:
        raise ValueError("a TURN shared secret is needed to mint credentials")
    if not USER_PART.fullmatch(user):
        raise ValueError(f"TURN user part must match {USER_PART.pattern}, not {user!r}")
    expires = int(time.time() if now is None else now) + ttl_seconds
    username = f"{expires}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), expires)
