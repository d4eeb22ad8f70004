"""``Idempotency-Key`` on ``POST /api/v1/jobs`` (and ``.../rerun``): a client that sends a job again because it
never got the answer (a dropped connection, a proxy's 502 after the server had created the job) gets the job
it already created, not a second one with every image done twice.

The first request with a key holds it while it creates the job (``pending``, a short lease), then stores its
answer under the key for ``REPLAY_TTL_S``. A repeat with the same key and the same request gets that answer
again (202, ``Idempotent-Replayed: true``); one while the first is still being created gets 409 with
``Retry-After``; one with the same key but a different request gets 422 (a key names one request). Keys
are scoped by API key owner, so two tenants' keys never meet, and stored as a hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import redis
from flask import Request

from matteflow.core.errors import shown

from .errors import ApiError
from .uploads import stream_size

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 255
# A request holding its key while it stores the uploads and records the job (the body is already read by
# then): long enough for a large batch's copy to storage, short enough that a crashed request's key frees
# itself for the client's next try.
PENDING_TTL_S = 120
# How long an answer is kept for repeats; never longer than the job itself lives.
REPLAY_TTL_S = 24 * 3600
# Seconds a client is asked to wait while the first request with its key is still running.
IN_PROGRESS_RETRY_S = 2


def check_key(raw: str) -> str:
    """The header's key: 1-255 printable ASCII characters (a UUID is the usual choice); else 400."""
    key = raw.strip()
    if not key or len(key) > MAX_KEY_CHARS or not all(" " <= c <= "~" for c in key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"{HEADER} must be 1-{MAX_KEY_CHARS} printable ASCII characters (a UUID, say), got {shown(raw)}",
        )
    return key


def request_fingerprint(req: Request) -> str:
    """A digest of what a job request asks for (its path, fields, query and files by name and size): a repeat must
    match it. The files' bytes are not hashed: a retry of the same upload has the same names and sizes."""
    parts: list[tuple[str, ...]] = [("path", req.path)]  # a key used on /jobs does not fit a rerun
    parts += [("field", k, v) for k, v in req.form.items(multi=True)]
    parts += [("query", k, v) for k, v in req.args.items(multi=True)]
    parts += [("file", k, f.filename or "", str(stream_size(f.stream))) for k, f in req.files.items(multi=True)]
    return hashlib.sha256(json.dumps(sorted(parts)).encode()).hexdigest()


class IdempotencyKeys:
    """The keys in Redis: ``mf:idem:<owner>:<sha256 of the key>`` -> JSON {state, fingerprint, answer}."""

    def __init__(self, client: redis.Redis, replay_ttl_s: float) -> None:
        self.redis = client
        self.replay_ttl_s = max(1, int(min(REPLAY_TTL_S, replay_ttl_s)))

    @staticmethod
    def _name(owner: str | None, key: str) -> str:
        return f"mf:idem:{owner or '-'}:{hashlib.sha256(key.encode()).hexdigest()}"

    def claim(self, owner: str | None, key: str, digest: str) -> dict[str, Any] | None:
        """Hold ``key`` for this request and return None (go on and create the job), or return the answer a
        finished request with this key gave. 409 while another holds it, 422 for a different request."""
        name = self._name(owner, key)
        pending = json.dumps({"state": "pending", "fingerprint": digest})
        for _ in range(2):  # a key that lapses between the two calls is claimed on the second round
            if self.redis.set(name, pending, nx=True, ex=PENDING_TTL_S):
                return None
            raw = self.redis.get(name)
            if raw is None:
                continue
            entry = json.loads(raw)
            if entry.get("fingerprint") != digest:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    f"this {HEADER} was used for a different request; use a new key for a new job",
                )
            if entry.get("state") != "done":
                raise ApiError(
                    409,
                    "idempotency_key_in_progress",
                    f"a request with this {HEADER} is still being created; retry after {IN_PROGRESS_RETRY_S} s",
                    retry_after_s=IN_PROGRESS_RETRY_S,
                )
            return dict(entry["answer"])
        raise ApiError(503, "unavailable", f"the {HEADER} could not be claimed; try again")

    def finish(self, owner: str | None, key: str, digest: str, answer: dict[str, Any]) -> None:
        """Keep the answer for repeats of the request."""
        entry = {"state": "done", "fingerprint": digest, "answer": answer}
        self.redis.set(self._name(owner, key), json.dumps(entry), ex=self.replay_ttl_s)

    def release(self, owner: str | None, key: str, digest: str) -> None:
        """A request that failed gives its key up (only while it still holds it), so the client's corrected
        retry can use it."""
        pending = json.dumps({"state": "pending", "fingerprint": digest})
        self.redis.eval(_RELEASE, 1, self._name(owner, key), pending)


# Delete the key only if it still holds this request's pending claim (a lapsed claim may be another's now).
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
