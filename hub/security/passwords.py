"""Password hashing with argon2id. Hashing is deliberately slow, so it runs in a thread."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import Parameters, PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's defaults (RFC 9106 low-memory profile)
# At most two hashes at a time, in their own threads: each takes ~64 MiB and most of a core,
# and a login flood must not starve the default executor the rest of the hub uses.
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
# Verified against when the user is unknown, so both paths take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

MIN_LENGTH = 12


def use_profile(params: Parameters) -> None:
    """Hash new passwords with other argon2 parameters (stored hashes carry their own).

    Tests use ``argon2.profiles.CHEAPEST``; a site may raise the cost on strong hardware.
    """
    global _hasher, _DUMMY_HASH
    _hasher = PasswordHasher.from_parameters(params)
    _DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"password must have at least {MIN_LENGTH} characters")


def generate() -> str:
    return secrets.token_urlsafe(18)


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_pool, _hasher.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    def _verify() -> bool:
        try:
            return _hasher.verify(stored_hash or _DUMMY_HASH, password) and bool(stored_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.get_running_loop().run_in_executor(_pool, _verify)
