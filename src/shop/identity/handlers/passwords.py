"""Passwords and client secrets, hashed with Argon2 (deliberately slow: off the event loop)."""

from __future__ import annotations

import asyncio
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher()
# Verified against when the email is unknown, so both answers take the same time: the hash of a
# random secret that was thrown away, made once with the hasher's parameters (hashing at import
# cost a function's cold start 0.6 s); made afresh should the parameters ever change.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$WnolEHxclWz1nyTzZvu0ww$"
    "kBOFMhVCgVeK+xHOXqcnGyFVcUlXegwM8IQq5FS083E"
)
if HASHER.check_needs_rehash(_DUMMY_HASH):
    _DUMMY_HASH = HASHER.hash(uuid.uuid4().hex)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


async def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one hashed; with no hash (no such account) always False, after
    as long a check as a real one."""

    def verify() -> bool:
        try:
            return HASHER.verify(password_hash or _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return False

    matches = await asyncio.to_thread(verify)
    return matches and password_hash is not None
