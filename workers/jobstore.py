"""Job state in Redis: one hash per job, one hash per item attribute, and atomic item transitions.

Keys:

- ``mf:job:{id}`` hash: state, total, done, failed, ended, created_at, updated_at, finished_at, options
  (JSON), kind (batch | single), zip (download name once finalised), open ("1" while the job takes more
  files: a batch uploaded in several requests, see :meth:`JobStore.add_items`), released (items below this
  index have been handed to the queue: :meth:`JobStore.release`), inflight (items released and not ended)
- ``mf:job:{id}:state`` / ``:name`` / ``:stored`` / ``:error`` / ``:etype`` / ``:attempts`` hashes keyed by
  item index; ``:model`` / ``:confidence`` (the model that ran, the result's confidence) for done items
- ``mf:job:{id}:owner`` / ``:lease`` / ``:holder`` hashes: the lease of each running item (owner = the task id
  holding it, expiry in ms on the Redis server's clock, holder = ``worker@host/pid`` for people); ``leases.py``
- ``mf:job:{id}:events`` list: an item index pushed whenever an item ends (``matte_one`` blocks on it)
- ``mf:jobs`` sorted set (id -> created_at) for TTL cleanup, ``mf:jobs:open`` set of unfinalised ids for the
  reconciler, ``mf:lock:<name>`` locks.

Redis Cluster is not supported: ``finish_job`` updates a job and the global ``mf:jobs:open`` set in one script,
which Cluster refuses (CROSSSLOT). Run one Redis (with replicas or Sentinel for availability). The ``{id}``
hash tags keep one job's keys together, which a future sharded layout would need.

Item transitions run as Lua scripts, so a redelivered or duplicated task can never count an item twice:
ending an item that already ended is a no-op that says so.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from matteflow.settings import Settings

ITEM_STATES = ("queued", "running", "done", "failed")
ENDED = ("done", "failed")
EVENTS_TTL_S = 3600

# Outcomes of the scripts besides "remaining items" / "attempt number".
ALREADY_ENDED = -1
UNKNOWN = -2
NOT_READY = -3
LEASED = -4  # start_item: another live owner holds the item's lease
NOT_OPEN = -5  # add_items / close: the job takes no more files
MOVED = -6  # add_items: another request added items since the caller read the total
OVER_LIMIT = -7  # add_items: the job would hold more items than allowed

# Milliseconds on the Redis server's clock: every lease is set and checked against one clock, whatever the
# workers' clocks say. (Redis >= 5 replicates scripts by their effects, so TIME before a write is allowed.)
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Starts an item for ARGV[3] (the owner: the task id) with a lease of ARGV[4] ms. A running item whose lease
# another owner still holds is left alone (-4): it is being worked on, and the watchdog re-sends it if that
# owner dies. The same owner may start it again (a Celery retry or redelivery keeps its task id).
_START_ITEM = (
    _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return -2 end
if cur == 'done' or cur == 'failed' then return -1 end
if cur == 'running' then
  local holder = redis.call('HGET', KEYS[4], ARGV[1])
  local expiry = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
  if holder and holder ~= ARGV[3] and expiry > now then return -4 end
end
redis.call('HSET', KEYS[2], ARGV[1], 'running')
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[5], ARGV[1], now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[6], ARGV[1], ARGV[5])
local n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if redis.call('HGET', KEYS[1], 'state') == 'queued' then redis.call('HSET', KEYS[1], 'state', 'running') end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
return n
"""
)

# Extends the leases ARGV[3..] that owner ARGV[1] still holds on running items to now + ARGV[2] ms.
# Returns the indices it no longer holds (ended, re-queued by the watchdog, taken over).
_RENEW_LEASES = (
    _NOW_MS
    + """
local lost = {}
for i = 3, #ARGV do
  local idx = ARGV[i]
  if redis.call('HGET', KEYS[1], idx) == 'running' and redis.call('HGET', KEYS[2], idx) == ARGV[1] then
    redis.call('HSET', KEYS[3], idx, now + tonumber(ARGV[2]))
  else
    table.insert(lost, idx)
  end
end
return lost
"""
)

# The watchdog's transition: every running item whose lease has expired goes back to queued (its owner is
# dead or hung) and is returned, so the caller sends it again. A late finish of the old owner still ends the
# item exactly once: ending is decided by the item state, not by who holds the lease.
_REQUEUE_EXPIRED = (
    _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local expired = {}
local leases = redis.call('HGETALL', KEYS[4])
for i = 1, #leases, 2 do
  local idx, expiry = leases[i], tonumber(leases[i + 1])
  if expiry <= now then
    if redis.call('HGET', KEYS[2], idx) == 'running' then
      redis.call('HSET', KEYS[2], idx, 'queued')
      table.insert(expired, idx)
    end
    redis.call('HDEL', KEYS[3], idx)
    redis.call('HDEL', KEYS[4], idx)
    redis.call('HDEL', KEYS[5], idx)
  end
end
if #expired > 0 then redis.call('HSET', KEYS[1], 'updated_at', ARGV[1]) end
return expired
"""
)

_END_ITEM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return -2 end
if cur == 'done' or cur == 'failed' then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
local ended = redis.call('HINCRBY', KEYS[1], 'ended', 1)
redis.call('HSET', KEYS[1], 'updated_at', ARGV[5])
redis.call('RPUSH', KEYS[5], ARGV[1])
redis.call('EXPIRE', KEYS[5], ARGV[6])
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
redis.call('HDEL', KEYS[8], ARGV[1])
-- One slot of the job's window (JobStore.release) is free again. Jobs recorded before windows have no cursor.
local released = redis.call('HGET', KEYS[1], 'released')
if released and tonumber(ARGV[1]) < tonumber(released) then redis.call('HINCRBY', KEYS[1], 'inflight', -1) end
local remaining = tonumber(redis.call('HGET', KEYS[1], 'total')) - ended
-- A job still taking files counts its next upload as one more item: its last item so far is not its last.
if redis.call('HGET', KEYS[1], 'open') == '1' then remaining = remaining + 1 end
return remaining
"""

# Marks the job finished exactly once; -3 while items are still open, 0 when it was already finished.
_FINISH_JOB = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'done' or state == 'failed' then return 0 end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local ended = tonumber(redis.call('HGET', KEYS[1], 'ended'))
if ARGV[1] == 'done' and (ended < total or redis.call('HGET', KEYS[1], 'open') == '1') then return -3 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'zip', ARGV[2], 'finished_at', ARGV[3], 'updated_at', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'job_error', ARGV[4]) end
redis.call('SREM', KEYS[2], ARGV[5])
redis.call('RPUSH', KEYS[3], 'job')
redis.call('EXPIRE', KEYS[3], ARGV[6])
return 1
"""

# More items for a job that takes files (ARGV[4]: JSON list of [name, stored, error, error type, url]), at
# indices ARGV[1] (the total its caller read) onwards, at most ARGV[2] items in all. -2 unknown job, -5 a job
# not taking files (closed, finished, or never open), -6 the total moved (another request added items: the
# caller's stored files are named for indices now taken), -7 over the limit; else the new total.
_ADD_ITEMS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('HGET', KEYS[1], 'open') ~= '1' then return -5 end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
if total ~= tonumber(ARGV[1]) then return -6 end
local items = cjson.decode(ARGV[4])
if total + #items > tonumber(ARGV[2]) then return -7 end
local failed = 0
for n, item in ipairs(items) do
  local i = total + n - 1
  redis.call('HSET', KEYS[3], i, item[1])
  redis.call('HSET', KEYS[4], i, item[2])
  if item[3] ~= '' then
    failed = failed + 1
    redis.call('HSET', KEYS[2], i, 'failed')
    redis.call('HSET', KEYS[6], i, item[3])
    redis.call('HSET', KEYS[7], i, item[4])
  else
    redis.call('HSET', KEYS[2], i, 'queued')
  end
  if item[5] ~= '' then redis.call('HSET', KEYS[5], i, item[5]) end
end
redis.call('HINCRBY', KEYS[1], 'total', #items)
redis.call('HINCRBY', KEYS[1], 'failed', failed)
redis.call('HINCRBY', KEYS[1], 'ended', failed)
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
return total + #items
"""

# Hands the job's next queued items to the queue: at most ARGV[1] items of it released and not ended at once
# (0: all), in multiples of ARGV[2] (the items of one task) unless the job has fewer left. Moves the cursor
# ``released`` past them and returns their indices; the caller sends them. Items failed at intake are passed
# over. A job recorded before windows existed (no cursor) has everything released already.
_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local released = redis.call('HGET', KEYS[1], 'released')
if not released then return {} end
released = tonumber(released)
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local window, step = tonumber(ARGV[1]), math.max(1, tonumber(ARGV[2]))
local room = total
if window > 0 then
  room = math.max(window, step) - tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0')
  room = room - room % step
end
local picked = {}
while released < total and #picked < room do
  if redis.call('HGET', KEYS[2], released) == 'queued' then table.insert(picked, released) end
  released = released + 1
end
if released ~= tonumber(redis.call('HGET', KEYS[1], 'released')) then
  redis.call('HSET', KEYS[1], 'released', released)
  redis.call('HINCRBY', KEYS[1], 'inflight', #picked)
end
return picked
"""

# The job takes no more files: returns how many items are still open (0: the caller finalises it), -5 when it
# was not taking files, -2 for an unknown job.
_CLOSE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('HGET', KEYS[1], 'open') ~= '1' then return -5 end
redis.call('HSET', KEYS[1], 'open', '0', 'updated_at', ARGV[1])
return tonumber(redis.call('HGET', KEYS[1], 'total')) - tonumber(redis.call('HGET', KEYS[1], 'ended'))
"""

# Progress on a job that a DELETE may have removed meanwhile: never recreate its hash.
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
return 1
"""

# The model and confidence of a result, for a job that still exists (a worker finishing after a DELETE must
# not leave keys without a TTL behind).
_RECORD_RESULT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
if ARGV[4] == '' then redis.call('HDEL', KEYS[4], ARGV[1]) else redis.call('HSET', KEYS[4], ARGV[1], ARGV[4]) end
return 1
"""

# A done job's archive is out of date (an item's result was replaced): noted with the time, for the rebuild and
# for the reconciler should the rebuild's message be lost. Never for a job deleted or not done.
_MARK_ZIP_STALE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'done' then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
return 1
"""

# A done job's archive replaced by a newer one: never for a job deleted or not done. The job stays marked
# stale if it was marked again after the rebuild began (ARGV[4], the mark it started from), so that later
# replacement is written too. Returns the archive name it replaced ('' for none), or false.
_REPLACE_ZIP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('HGET', KEYS[1], 'state') ~= 'done' then return false end
local old = redis.call('HGET', KEYS[1], 'zip') or ''
redis.call('HSET', KEYS[1], 'zip', ARGV[1], 'updated_at', ARGV[2])
local mark = redis.call('ZSCORE', KEYS[2], ARGV[3])
if mark and tonumber(mark) <= tonumber(ARGV[4]) then redis.call('ZREM', KEYS[2], ARGV[3]) end
return old
"""

# Compare-and-delete / compare-and-extend: only the holder of a lock (its token) may release or extend it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: job hash, callbacks set; ARGV: final callback state, job id.
_END_CALLBACK = """
if redis.call('exists', KEYS[1]) == 1 then redis.call('hset', KEYS[1], 'callback_state', ARGV[1]) end
redis.call('srem', KEYS[2], ARGV[2])
return 1
"""

JOBS_KEY = "mf:jobs"
OPEN_KEY = "mf:jobs:open"
CALLBACKS_KEY = "mf:jobs:callbacks"  # jobs whose finished-callback is not delivered (or given up) yet
STALE_ZIPS_KEY = "mf:jobs:stale-zip"  # done jobs whose archive must be written again, by time marked


def make_redis(settings: Settings, *, fast_fail: bool = False) -> redis.Redis:
    """A Redis client for job state. It rides out a broker restart of several seconds by retrying with
    backoff (redis-py's own Retry), unless ``fast_fail`` (health checks must answer quickly)."""
    if not settings.redis_url:
        raise ValueError("no Redis URL: set MATTEFLOW_REDIS_URL or start the service with `matteflow up`")
    if fast_fail:
        return redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 12),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def chunked(items: list[int], size: int) -> list[list[int]]:
    """``items`` in runs of ``size`` (at least 1): one task per run."""
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]


def unreleased_items(client: redis.Redis) -> int:
    """Items of unfinished jobs that their window still holds back (:meth:`JobStore.release`): work waiting
    beside the queues, which the queue metrics and autoscaling count too. Raises redis errors."""
    job_ids = list(client.smembers(OPEN_KEY))
    if not job_ids:
        return 0
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(_job_key(_text(job_id)), ["total", "released"])
    held = 0
    for total, released in pipe.execute():
        if total is not None and released is not None:  # deleted meanwhile, or recorded before windows
            held += max(0, int(total) - int(released))
    return held


def _job_key(job_id: str, suffix: str = "") -> str:
    return f"mf:job:{{{job_id}}}{':' + suffix if suffix else ''}"


@dataclass(frozen=True)
class NewItem:
    """One upload as the job records it: ``error`` set means it failed intake and is never enqueued."""

    name: str
    stored: str
    error: str = ""
    error_type: str = ""
    url: str = ""  # an image named by URL: the worker reads it into ``stored`` first (matteflow/fetch.py)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class JobStore:
    """Job and item state in Redis. Stateless besides the client: share one per process."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._start = client.register_script(_START_ITEM)
        self._end = client.register_script(_END_ITEM)
        self._finish = client.register_script(_FINISH_JOB)
        self._end_callback = client.register_script(_END_CALLBACK)
        self._renew = client.register_script(_RENEW_LEASES)
        self._requeue = client.register_script(_REQUEUE_EXPIRED)
        self._touch = client.register_script(_TOUCH)
        self._record = client.register_script(_RECORD_RESULT)
        self._unlock = client.register_script(_UNLOCK)
        self._extend_lock = client.register_script(_EXTEND_LOCK)
        self._replace_zip = client.register_script(_REPLACE_ZIP)
        self._mark_zip_stale = client.register_script(_MARK_ZIP_STALE)
        self._add_items = client.register_script(_ADD_ITEMS)
        self._close = client.register_script(_CLOSE)
        self._release = client.register_script(_RELEASE)

    # -- creation and reading ---------------------------------------------------------------------------

    def create(
        self,
        job_id: str,
        items: Sequence[NewItem],
        options: dict[str, Any],
        kind: str = "batch",
        callback: str = "",
        *,
        open_: bool = False,
    ) -> None:
        """Record a new job with its items (queued, or failed at intake) in one transaction; ``callback`` is
        the URL told when it finishes (workers/callbacks.py). An ``open_`` job takes more items
        (:meth:`add_items`) and is not finished before :meth:`close`."""
        now = time.time()
        failed = sum(1 for item in items if item.error)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            _job_key(job_id),
            mapping={
                "id": job_id,
                "state": "queued",
                "kind": kind,
                "total": len(items),
                "done": 0,
                "failed": failed,
                "ended": failed,
                "created_at": now,
                "updated_at": now,
                "finished_at": "",
                "options": json.dumps(options),
                "zip": "",
                "callback": callback,
                "callback_state": "pending" if callback else "",
                "open": "1" if open_ else "0",
                "released": 0,  # nothing handed to the queue yet: the caller calls release()
                "inflight": 0,
            },
        )
        if callback:
            pipe.sadd(CALLBACKS_KEY, job_id)
        if items:
            pipe.hset(
                _job_key(job_id, "state"),
                mapping={i: ("failed" if item.error else "queued") for i, item in enumerate(items)},
            )
            pipe.hset(_job_key(job_id, "name"), mapping={i: item.name for i, item in enumerate(items)})
            pipe.hset(_job_key(job_id, "stored"), mapping={i: item.stored for i, item in enumerate(items)})
        urls = {i: item.url for i, item in enumerate(items) if item.url}
        if urls:
            pipe.hset(_job_key(job_id, "url"), mapping=urls)
        errors = {i: item.error for i, item in enumerate(items) if item.error}
        if errors:
            pipe.hset(_job_key(job_id, "error"), mapping=errors)
            pipe.hset(
                _job_key(job_id, "etype"),
                mapping={i: item.error_type for i, item in enumerate(items) if item.error},
            )
        pipe.zadd(JOBS_KEY, {job_id: now})
        pipe.sadd(OPEN_KEY, job_id)
        pipe.execute()

    def add_items(self, job_id: str, first: int, items: Sequence[NewItem], limit: int) -> int:
        """Record ``items`` (queued, or failed at intake) as items ``first``.. of a job that takes files;
        ``first`` is the job's total as the caller read it before storing their files. Returns the new total,
        or UNKNOWN, NOT_OPEN, MOVED or OVER_LIMIT (nothing recorded then)."""
        keys = [_job_key(job_id, s) for s in ("", "state", "name", "stored", "url", "error", "etype")]
        rows = [[item.name, item.stored, item.error, item.error_type or "InputError", item.url] for item in items]
        return int(self._add_items(keys=keys, args=[first, limit, time.time(), json.dumps(rows)]))

    def release(self, job_id: str, window: int = 0, step: int = 1) -> list[int]:
        """Claim the job's next queued items for the queue and return them (the caller sends their tasks): all
        of them with ``window`` 0, else as many as keep at most ``window`` items of the job released and not
        yet ended, in multiples of ``step`` (a task's items). Each item is returned once, ever: a caller that
        dies before sending leaves it to the reconciler's stale-job sweep. Ending an item frees its slot."""
        keys = [_job_key(job_id), _job_key(job_id, "state")]
        return [int(i) for i in self._release(keys=keys, args=[max(0, window), max(1, step)])]

    def close(self, job_id: str) -> int:
        """The job takes no more files. Returns its open items (0: the caller finalises it), NOT_OPEN when it
        was not taking files (already closed: nothing changes), or UNKNOWN."""
        return int(self._close(keys=[_job_key(job_id)], args=[time.time()]))

    def exists(self, job_id: str) -> bool:
        return bool(self.redis.exists(_job_key(job_id)))

    def job_fields(self, job_id: str) -> dict[str, str] | None:
        raw = self.redis.hgetall(_job_key(job_id))
        return {_text(k): _text(v) for k, v in raw.items()} if raw else None

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job as the JSON API shows it (see docs/internal-api.md), or None for an unknown id."""
        pipe = self.redis.pipeline(transaction=True)
        for suffix in ("", "state", "name", "error", "model", "confidence", "warnings"):
            pipe.hgetall(_job_key(job_id, suffix))
        raw_job, states, names, errors, models, confidences, warnings = pipe.execute()
        if not raw_job:
            return None
        job = {_text(k): _text(v) for k, v in raw_job.items()}
        states = {int(k): _text(v) for k, v in states.items()}
        names = {int(k): _text(v) for k, v in names.items()}
        errors = {int(k): _text(v) for k, v in errors.items()}
        models = {int(k): _text(v) for k, v in models.items()}
        confidences = {int(k): float(v) for k, v in confidences.items()}
        warnings = {int(k): json.loads(v) for k, v in warnings.items()}
        items = [
            {
                "index": i,
                "name": names.get(i, ""),
                "state": states.get(i, "queued"),
                "error": errors.get(i),
                "model": models.get(i),
                "confidence": confidences.get(i),
                "warnings": warnings.get(i, []),
            }
            for i in range(int(job["total"]))
        ]
        return {
            "id": job_id,
            "state": job["state"],
            "kind": job.get("kind", "batch"),
            "total": int(job["total"]),
            "done": int(job["done"]),
            "failed": int(job["failed"]),
            "created_at": float(job["created_at"]),
            "finished_at": float(job["finished_at"]) if job.get("finished_at") else None,
            "options": json.loads(job["options"]),
            "zip": job.get("zip") or None,
            "error": job.get("job_error") or None,
            "callback": job.get("callback_state") or None,
            "open": job.get("open") == "1",
            "items": items,
        }

    def get_item(self, job_id: str, index: int) -> dict[str, Any] | None:
        """One item as the API shows it, plus its job's ``total`` and ``options``, read without loading the
        job's other items (a page of 5000 thumbnails asks 5000 times). None for an unknown job."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hmget(_job_key(job_id), ["total", "options"])
        for suffix in ("state", "name", "error"):
            pipe.hget(_job_key(job_id, suffix), index)
        (total, options), state, name, error = pipe.execute()
        if total is None:
            return None
        return {
            "index": index,
            "name": _text(name) if name is not None else "",
            "state": _text(state) if state is not None else "queued",
            "error": _text(error) if error is not None else None,
            "total": int(total),
            "options": json.loads(options) if options else {},
        }

    def item_state(self, job_id: str, index: int) -> str | None:
        value = self.redis.hget(_job_key(job_id, "state"), index)
        return _text(value) if value is not None else None

    def item_states(self, job_id: str) -> dict[int, str]:
        return {int(k): _text(v) for k, v in self.redis.hgetall(_job_key(job_id, "state")).items()}

    def item_url(self, job_id: str, index: int) -> str | None:
        """The URL an item was named by (read by the worker before its first run), or None for an upload."""
        value = self.redis.hget(_job_key(job_id, "url"), index)
        return _text(value) if value is not None else None

    def stored_name(self, job_id: str, index: int) -> str | None:
        value = self.redis.hget(_job_key(job_id, "stored"), index)
        return _text(value) if value is not None else None

    def item_error(self, job_id: str, index: int) -> tuple[str, str]:
        """(error class name, message) of a failed item; empty strings when none was recorded."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(_job_key(job_id, "etype"), index)
        pipe.hget(_job_key(job_id, "error"), index)
        etype, message = pipe.execute()
        return (_text(etype) if etype else "", _text(message) if message else "")

    def item_result_info(self, job_id: str, index: int) -> tuple[str | None, float | None, list[str]]:
        """(model that ran, confidence, warnings) of a done item; None (or no warnings) for what was not
        recorded."""
        pipe = self.redis.pipeline(transaction=False)
        for suffix in ("model", "confidence", "warnings"):
            pipe.hget(_job_key(job_id, suffix), index)
        model, confidence, warnings = pipe.execute()
        return (
            _text(model) if model else None,
            float(confidence) if confidence is not None else None,
            json.loads(warnings) if warnings else [],
        )

    def attempts(self, job_id: str, index: int) -> int:
        value = self.redis.hget(_job_key(job_id, "attempts"), index)
        return int(value) if value is not None else 0

    # -- transitions --------------------------------------------------------------------------------------

    def start_item(self, job_id: str, index: int, owner: str, lease_s: float, holder: str = "") -> int:
        """Mark an item running under ``owner``'s lease of ``lease_s`` seconds and count the attempt. Returns
        the attempt number (1, 2, ...), or ALREADY_ENDED / UNKNOWN / LEASED: the caller must then do nothing.
        ``holder`` says where it runs (worker host name and pid), for people and tests: see :meth:`holders`."""
        return int(self._start_call(job_id, index, owner, lease_s, holder))

    def _start_call(self, job_id: str, index: int, owner: str, lease_s: float, holder: str, client: Any = None) -> Any:
        keys = [_job_key(job_id, s) for s in ("", "state", "attempts", "owner", "lease", "holder")]
        return self._start(keys=keys, args=[index, time.time(), owner, _ms(lease_s), holder], client=client)

    def start_items(
        self, job_id: str, indices: Sequence[int], owner: str, lease_s: float, holder: str = ""
    ) -> list[int]:
        """:meth:`start_item` for each of ``indices`` (each atomic on its own, as there), in one round trip:
        a chunk's starts cost one request however many images it holds."""
        pipe = self.redis.pipeline(transaction=False)
        for index in indices:
            self._start_call(job_id, index, owner, lease_s, holder, client=pipe)
        return [int(value) for value in pipe.execute()]

    def stored_names(self, job_id: str, indices: Sequence[int]) -> list[str | None]:
        """:meth:`stored_name` of each of ``indices``, in one round trip."""
        if not indices:
            return []
        values = self.redis.hmget(_job_key(job_id, "stored"), list(indices))
        return [_text(value) if value is not None else None for value in values]

    def end_done_items(self, job_id: str, results: Sequence[tuple[int, str, float, Sequence[str]]]) -> list[int]:
        """For each ``(index, model, confidence, warnings)``: :meth:`record_result`, then :meth:`end_item` done,
        in that order and in one round trip. Returns what each end returned (items still open, or
        ALREADY_ENDED / UNKNOWN), in the order of ``results``."""
        pipe = self.redis.pipeline(transaction=False)
        for index, model, confidence, warnings in results:
            self._record_call(job_id, index, model, confidence, warnings, client=pipe)
            self._end_call(job_id, index, "done", client=pipe)
        replies = pipe.execute()
        return [int(value) for value in replies[1::2]]

    def holders(self, job_id: str) -> dict[int, str]:
        """Which worker (``name@host/pid``) holds each leased item of the job."""
        return {int(k): _text(v) for k, v in self.redis.hgetall(_job_key(job_id, "holder")).items()}

    def renew_leases(self, job_id: str, owner: str, indices: Iterable[int], lease_s: float) -> list[int]:
        """Extend ``owner``'s leases on ``indices`` to ``lease_s`` from now; returns those it no longer holds."""
        args = [owner, _ms(lease_s), *indices]
        if len(args) == 2:
            return []
        keys = [_job_key(job_id, s) for s in ("state", "owner", "lease")]
        return [int(i) for i in self._renew(keys=keys, args=args)]

    def requeue_expired(self, job_id: str) -> list[int]:
        """Put the job's running items whose lease expired back to queued; returns them (to be re-sent)."""
        keys = [_job_key(job_id, s) for s in ("", "state", "owner", "lease", "holder")]
        return sorted(int(i) for i in self._requeue(keys=keys, args=[time.time()]))

    def leased_items(self, job_id: str) -> set[int]:
        """Items whose lease has not expired (someone is working on them, or waiting to retry them)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        pipe.hgetall(_job_key(job_id, "lease"))
        (seconds, micros), leases = pipe.execute()
        now = seconds * 1000 + micros // 1000
        return {int(k) for k, v in leases.items() if int(v) > now}

    def end_item(self, job_id: str, index: int, state: str, error: str = "", error_type: str = "") -> int:
        """End an item as done or failed. Returns how many items are still open (0: this call ended the
        last one, so the caller finalises), ALREADY_ENDED when a duplicate got here first, or UNKNOWN."""
        if state not in ENDED:
            raise ValueError(f"an item ends as done or failed, not {state!r}")
        return int(self._end_call(job_id, index, state, error, error_type))

    def _end_call(
        self, job_id: str, index: int, state: str, error: str = "", error_type: str = "", client: Any = None
    ) -> Any:
        keys = [_job_key(job_id, s) for s in ("", "state", "error", "etype", "events", "owner", "lease", "holder")]
        args = [index, state, error, error_type or "MattingError", time.time(), EVENTS_TTL_S]
        return self._end(keys=keys, args=args, client=client)

    def record_result(
        self, job_id: str, index: int, model: str, confidence: float, warnings: Sequence[str] = ()
    ) -> None:
        """Note which model made an item's result, how confident it is and what the engine warned of (a crop
        with no subject, a shadow with no floor, a size limit not met); call before ending it done (a
        redelivered duplicate writes the same facts again, which is harmless). A job deleted meanwhile stays
        deleted: nothing is written for it."""
        self._record_call(job_id, index, model, confidence, warnings)

    def _record_call(
        self, job_id: str, index: int, model: str, confidence: float, warnings: Sequence[str], client: Any = None
    ) -> Any:
        keys = [_job_key(job_id, s) for s in ("", "model", "confidence", "warnings")]
        notes = json.dumps(list(warnings)) if warnings else ""
        return self._record(keys=keys, args=[index, model, f"{confidence:.4f}", notes], client=client)

    def finish_job(self, job_id: str, zip_name: str = "", state: str = "done", error: str = "") -> int:
        """Mark the job done (every item ended) or failed (it could not run). 1 if this call did it, 0 if it
        was already finished, NOT_READY while items are open, UNKNOWN for a deleted job."""
        keys = [_job_key(job_id), OPEN_KEY, _job_key(job_id, "events")]
        args = [state, zip_name, time.time(), error, job_id, EVENTS_TTL_S]
        return int(self._finish(keys=keys, args=args))

    def mark_zip_stale(self, job_id: str) -> bool:
        """Note that a done job's archive must be written again (now); False for a job deleted or not done."""
        return bool(self._mark_zip_stale(keys=[_job_key(job_id), STALE_ZIPS_KEY], args=[job_id, time.time()]))

    def zip_stale_since(self, job_id: str) -> float | None:
        """When the job's archive was last marked out of date, None when it is not."""
        return self.redis.zscore(STALE_ZIPS_KEY, job_id)

    def stale_zips(self, marked_before: float) -> list[str]:
        """Jobs whose archive was marked out of date before ``marked_before`` and not written again since."""
        return [_text(j) for j in self.redis.zrangebyscore(STALE_ZIPS_KEY, "-inf", marked_before, start=0, num=500)]

    def forget_stale_zip(self, job_id: str) -> None:
        self.redis.zrem(STALE_ZIPS_KEY, job_id)

    def replace_zip(self, job_id: str, zip_name: str, stale_since: float | None = None) -> str | None:
        """Point a done job at a newer archive, written from the job as it was when it was marked stale at
        ``stale_since`` (the mark is cleared unless the job was marked again since). Returns the name it
        replaced ('' for none), or None when the job is deleted or not done (the new archive is then the
        caller's to remove)."""
        mark = repr(stale_since) if stale_since is not None else "-1"
        old = self._replace_zip(keys=[_job_key(job_id), STALE_ZIPS_KEY], args=[zip_name, time.time(), job_id, mark])
        return None if old is None else _text(old)

    def touch(self, job_id: str, when: float | None = None) -> bool:
        """Record progress on the job now (or at ``when``): the reconciler's staleness clock. A job deleted
        meanwhile stays deleted (False)."""
        return bool(self._touch(keys=[_job_key(job_id)], args=[time.time() if when is None else when]))

    def wait_event(self, job_id: str, timeout: float) -> str | None:
        """Block until an item of the job ends (or the job finishes); None after ``timeout`` seconds."""
        popped = self.redis.blpop([_job_key(job_id, "events")], timeout=max(timeout, 0.01))
        return _text(popped[1]) if popped else None

    def try_lock(self, name: str, seconds: float) -> str | None:
        """A best-effort mutex (SET NX PX) so that only one process runs a periodic sweep or finalises a
        job at a time; it expires by itself if its holder dies. Returns the holder's token, or None."""
        token = secrets.token_hex(16)
        return token if self.redis.set(f"mf:lock:{name}", token, nx=True, px=_ms(seconds)) else None

    def extend_lock(self, name: str, token: str, seconds: float) -> bool:
        """Keep holding a lock for ``seconds`` more; False if it expired and someone else may hold it now."""
        return bool(self._extend_lock(keys=[f"mf:lock:{name}"], args=[token, _ms(seconds)]))

    def unlock(self, name: str, token: str) -> bool:
        """Release the lock if ``token`` still holds it (never someone else's after ours expired)."""
        return bool(self._unlock(keys=[f"mf:lock:{name}"], args=[token]))

    # -- sweeps -------------------------------------------------------------------------------------------

    def pending_callbacks(self) -> list[str]:
        return sorted(_text(v) for v in self.redis.smembers(CALLBACKS_KEY))

    def end_callback(self, job_id: str, state: str) -> None:
        """The job's callback was ``delivered`` or ``gave_up``: no sweep sends it again. A job deleted
        meanwhile stays deleted (no key is recreated)."""
        self._end_callback(keys=[_job_key(job_id), CALLBACKS_KEY], args=[state, job_id])

    def open_jobs(self) -> list[str]:
        return sorted(_text(v) for v in self.redis.smembers(OPEN_KEY))

    def forget_open(self, job_id: str) -> None:
        self.redis.srem(OPEN_KEY, job_id)

    def jobs_created_before(self, cutoff: float, limit: int = 500) -> list[str]:
        return [_text(v) for v in self.redis.zrangebyscore(JOBS_KEY, "-inf", cutoff, start=0, num=limit)]

    def known(self, job_ids: Iterable[str]) -> set[str]:
        ids = list(job_ids)
        if not ids:
            return set()
        scores = self.redis.zmscore(JOBS_KEY, ids)
        return {job_id for job_id, score in zip(ids, scores, strict=True) if score is not None}

    def delete(self, job_id: str) -> bool:
        """Remove every key of the job. True if it existed."""
        suffixes = ("", "state", "name", "stored", "url", "error", "etype", "attempts", "events", "model")
        suffixes += ("confidence", "warnings", "owner", "lease", "holder")
        keys = [_job_key(job_id, s) for s in suffixes]
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(*keys)
        pipe.zrem(JOBS_KEY, job_id)
        pipe.srem(OPEN_KEY, job_id)
        pipe.srem(CALLBACKS_KEY, job_id)
        pipe.zrem(STALE_ZIPS_KEY, job_id)
        removed, *_ = pipe.execute()
        return bool(removed)
