"""API keys and per-client rate limits.

Keys are compared in constant time (``hmac.compare_digest`` over SHA-256 digests, against every key,
so neither the match position nor the key length leaks). Logs and metrics name a key only by its id,
the first 12 hex digits of its digest.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from api.settings import ApiSettings
from rag.errors import InputError

Role = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = ("read", "write", "admin")


@dataclass(frozen=True)
class ApiKey:
    """A configured key: its id (safe to log), its role and the collections it may use (None: all).

    ``read`` queries and reads documents; ``write`` also adds and removes them and runs jobs (its own);
    ``admin`` also sees and cancels every job."""

    key_id: str
    digest: bytes
    collections: frozenset[str] | None
    role: Role = "write"

    def may_use(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    @property
    def may_write(self) -> bool:
        return self.role in ("write", "admin")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def make_key(secret: str, collections: frozenset[str] | None, role: Role = "write") -> ApiKey:
    digest = _digest(secret)
    return ApiKey(digest.hex()[:12], digest, collections, role)


def _key_from_parts(secret: str, parts: list[str]) -> ApiKey:
    """A word that is a role name is the role (default ``write``); the others are collections."""
    if not secret:
        raise InputError("an API key entry is empty")
    roles = [p for p in parts if p in ROLES]
    if len(roles) > 1:
        raise InputError(f"an API key entry names more than one role: {', '.join(roles)}")
    names = frozenset(p for p in parts if p not in ROLES)
    return make_key(secret, names or None, roles[0] if roles else "write")


def parse_key_entry(entry: str) -> ApiKey:
    """``KEY``, ``KEY:collection|collection``, with an optional role: ``KEY:read``, ``KEY:news:read``."""
    secret, *rest = entry.strip().split(":")
    parts = [p.strip() for part in rest for p in part.split("|") if p.strip()]
    return _key_from_parts(secret, parts)


def load_keys(settings: ApiSettings) -> list[ApiKey]:
    keys = [parse_key_entry(e) for e in settings.api_keys.split(",") if e.strip()]
    if settings.api_keys_file:
        path = Path(settings.api_keys_file)
        try:
            lines = path.read_text("utf-8").splitlines()
        except OSError as exc:
            raise InputError(f"cannot read the API keys file {path}: {exc.strerror}") from exc
        for line in lines:
            words = line.split("#", 1)[0].split()
            if words:
                keys.append(_key_from_parts(words[0], words[1:]))
    return keys


class KeyRing:
    """The configured keys; :meth:`identify` finds the one presented, in constant time."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    def identify(self, presented: str) -> ApiKey | None:
        digest = _digest(presented)
        found: ApiKey | None = None
        for key in self.keys:  # no early exit: every key is compared
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


class RateLimiter:
    """Token buckets per client: ``rate`` requests a second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until it may (a Retry-After)."""
        if not self.enabled:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
