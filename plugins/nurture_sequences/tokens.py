"""Signed tokens for unsubscribe links and double opt-in confirmations.

A token is ``base64url(json payload) . base64url(HMAC-SHA256(secret, payload)[:16])``.
It carries the workspace, lead, channel, purpose and the address it was sent
to, so following it records an opt-out for exactly that person and address,
without a database lookup to find out whom it concerns, and nobody can forge
one for another lead without the secret.

A token may carry an expiry (``e``, Unix seconds): confirmation links do
(``confirm_valid_for``); unsubscribe links never expire, as the law expects
them to keep working.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any

from corecrm.errors import CrmError


class TokenError(CrmError):
    """A token that is malformed or whose signature does not match."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sig(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()[:16]


def sign(secret: str, kind: str, **fields: Any) -> str:
    if not secret:
        raise TokenError("no signing secret configured (plugins.nurture_sequences.secret)")
    body = json.dumps({"k": kind, **fields}, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return f"{_b64(body)}.{_b64(_sig(secret, body))}"


class TokenExpired(TokenError):
    """A genuine token whose validity has run out."""


def verify(secret: str, token: str, kind: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Return the token's fields, or raise :class:`TokenError` saying what is wrong.

    A token with an expiry (``e``) is refused once ``now`` is past it
    (:class:`TokenExpired`); ``now=None`` skips that check.
    """
    token = token.strip()
    try:
        body_b64, sig_b64 = token.split(".")
        body, sig = _unb64(body_b64), _unb64(sig_b64)
    except (ValueError, TypeError):
        raise TokenError("malformed token") from None
    if not hmac.compare_digest(sig, _sig(secret, body)):
        raise TokenError("invalid token signature (wrong secret, or the token was altered)")
    try:
        data = json.loads(body)
    except ValueError:
        raise TokenError("malformed token payload") from None
    if not isinstance(data, dict) or data.get("k") != kind:
        raise TokenError(f"not a {kind} token")
    exp = data.get("e")
    if now is not None and isinstance(exp, (int, float)) and now.timestamp() > exp:
        raise TokenExpired(f"this {kind} link expired on {dt.datetime.fromtimestamp(exp, dt.timezone.utc).isoformat()}")
    return data


def peek(token: str) -> dict[str, Any] | None:
    """The payload of a token, *unverified* (to find which workspace's secret verifies it), or ``None``."""
    try:
        body_b64, _sig_b64 = token.strip().split(".")
        data = json.loads(_unb64(body_b64))
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def fingerprint(token: str) -> str:
    """What is kept as proof: a hash of the token, not the token itself."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]
