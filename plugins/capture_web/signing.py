"""Webhook signatures: HMAC-SHA256 over ``<timestamp>.<body>``, replay-safe.

Headers sent with every webhook::

    X-Corecrm-Timestamp: 1732300000
    X-Corecrm-Signature: v1=<hex HMAC-SHA256(secret, "1732300000." + body)>
    X-Corecrm-Delivery:  <idempotency key; the same for every retry of one delivery>

A receiver recomputes the MAC over the raw body, compares in constant time,
rejects timestamps older than its tolerance (replays), and drops a delivery
key it has already processed (retries after a lost response). This module
is importable on its own, so receivers written in Python can use
:func:`verify` directly.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Corecrm-Timestamp"
SIGNATURE_HEADER = "X-Corecrm-Signature"
DELIVERY_HEADER = "X-Corecrm-Delivery"
EVENT_HEADER = "X-Corecrm-Event"

DEFAULT_TOLERANCE = 300  # seconds


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def headers(secret: str | bytes, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, body, ts)}


class SignatureError(ValueError):
    """The request is not signed by someone who knows the secret, or it is too old."""


def verify(secret: str | bytes, body: bytes, timestamp: str | None, signature: str | None, *, tolerance: int = DEFAULT_TOLERANCE, now: float | None = None) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is valid for ``body`` and ``timestamp`` is fresh."""
    if not timestamp or not signature:
        raise SignatureError("missing timestamp or signature header")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise SignatureError(f"timestamp is {int(current - ts)} s away from now (tolerance {tolerance} s)")
    expected = sign(secret, body, ts)
    # Several signatures may be sent during a secret rotation: "v1=a,v1=b".
    if not any(hmac.compare_digest(expected, s.strip()) for s in signature.split(",")):
        raise SignatureError("signature does not match")
