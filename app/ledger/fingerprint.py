"""Request fingerprints: what "the same request" means for an idempotency key."""

import hashlib
from typing import Any

import orjson


def fingerprint(operation: str, payload: Any) -> bytes:
    """SHA-256 of the operation name and the request's canonical JSON (sorted keys)."""
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(operation.encode() + b"\n" + canonical).digest()
