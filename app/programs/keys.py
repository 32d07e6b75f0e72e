"""API key format and hashing.

A key is `plk_<prefix>_<secret>`: the prefix identifies it in listings and `keys revoke`, the
whole key is stored only as its SHA-256 (keys are 190+ bits of randomness, so a fast hash is
safe, and lookups are one indexed equality).
"""

import hashlib
import secrets

KEY_PREFIX = "plk"


def new_key() -> tuple[str, str]:
    """A fresh key and its public prefix; the key is shown once and never stored."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    return f"{KEY_PREFIX}_{prefix}_{secret}", prefix


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
