"""Request limits: a sliding-window rate limiter and the signed form token.

The rate limiter is per server process (one ``corecrm serve``): counts live
in memory, keyed by client IP and by API key, each with its own limit per
minute. Several processes behind a balancer each enforce their own share.

The form token in the generated HTML carries the time the form was served,
a random nonce and an HMAC over both. On submit it gives the fill time (bots
post within milliseconds) and is the duplicate-submit key: the same token
posted twice (a double click) yields the first capture's id, not a new lead.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import secrets
import threading
import time
from typing import Callable


class RateLimiter:
    """At most ``limit`` hits per ``window`` seconds per key (sliding window of timestamps)."""

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Record a hit; return ``None`` when allowed, else the seconds until the next hit is allowed."""
        if self.limit <= 0:
            return None
        now = self.clock()
        with self._lock:
            q = self._hits.get(key)
            if q is None:
                q = self._hits[key] = collections.deque()
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= self.limit:
                return max(0.0, q[0] + self.window - now)
            q.append(now)
            if len(self._hits) > 100_000:  # forget idle clients
                for k in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                    del self._hits[k]
            return None


class FormTokens:
    """Issue and check ``<issued-at>.<nonce>.<mac>`` tokens for one form."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def _mac(self, form: str, issued: str, nonce: str) -> str:
        mac = hmac.new(self.secret, f"{form}|{issued}|{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()

    def issue(self, form: str, now: float | None = None) -> str:
        issued = f"{(time.time() if now is None else now):.3f}"
        nonce = secrets.token_urlsafe(12)
        return f"{issued}.{nonce}.{self._mac(form, issued, nonce)}"

    def check(self, form: str, token: str | None) -> float | None:
        """The time the form was served, or ``None`` when the token is missing or forged."""
        if not token or token.count(".") < 3:
            return None
        # issued is "<seconds>.<millis>" (it holds a dot itself): split from the right.
        parts = token.rsplit(".", 2)
        issued, nonce, mac = parts[0], parts[1], parts[2]
        if not hmac.compare_digest(mac, self._mac(form, issued, nonce)):
            return None
        try:
            return float(issued)
        except ValueError:
            return None
