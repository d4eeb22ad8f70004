"""Who may list which jobs: optional API keys, and the per-key index behind ``GET /api/v1/jobs``.

The privacy model (README "Privacy"): a job id (128 random bits) is the secret that opens a job. The server
keeps no list a stranger could read: the page keeps the ids of its own jobs in the browser and asks for
exactly those (``?ids=``). A deployment that wants server-side lists sets ``MATTEFLOW_API_KEYS``; a job
created with a key is indexed under that key, and only that key lists it. Keys are never stored: the index
is named by a hash of the key.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

import redis

from .errors import ApiError

# At most this many jobs in one listing (a key's newest first, or ids asked for).
MAX_LISTED = 200


def parse_api_keys(raw: str) -> tuple[str, ...]:
    """``MATTEFLOW_API_KEYS``: keys separated by commas or whitespace; empty means keys are off."""
    return tuple(key for key in raw.replace(",", " ").split() if key)


def owner_of_key(key: str) -> str:
    """The name of a key's index: a hash, so neither Redis nor a dump of it holds the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return (headers.get("X-API-Key") or "").strip() or None


def request_owner(headers: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    """The owner (key hash) of a request, None when it presents no key.

    A key that is not configured is refused (401), so a typo never silently creates unlisted jobs.
    """
    key = presented_key(headers)
    if key is None:
        return None
    if not keys:
        raise ApiError(401, "api_keys_disabled", "this server has no API keys (MATTEFLOW_API_KEYS is not set)")
    if not any(hmac.compare_digest(key.encode(), known.encode()) for known in keys):
        raise ApiError(401, "invalid_api_key", "the API key is not valid on this server")
    return owner_of_key(key)


def _owner_key(owner: str) -> str:
    return f"mf:owner:{owner}:jobs"


class JobIndex:
    """Job ids per API key, in a Redis sorted set by creation time; expired entries are pruned as they are
    found (the jobs themselves expire through the reconciler)."""

    def __init__(self, client: redis.Redis, ttl_s: float) -> None:
        self.redis = client
        self.ttl_s = ttl_s

    def record(self, owner: str, job_id: str, created: float | None = None) -> None:
        now = time.time() if created is None else created
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(_owner_key(owner), {job_id: now})
        pipe.zremrangebyscore(_owner_key(owner), "-inf", now - self.ttl_s)
        pipe.expire(_owner_key(owner), int(self.ttl_s) + 3600)
        pipe.execute()

    def newest(self, owner: str, limit: int = MAX_LISTED) -> list[str]:
        ids = self.redis.zrevrange(_owner_key(owner), 0, max(0, limit - 1))
        return [v.decode() if isinstance(v, bytes) else str(v) for v in ids]

    def forget(self, owner: str, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            self.redis.zrem(_owner_key(owner), *ids)
