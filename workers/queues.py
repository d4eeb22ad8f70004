"""Task names and the Redis queues they travel on: the one definition that the enqueueing side (web, ``matteflow
submit``, the reconciler), the worker, the queue-metrics exporter and the deployment (KEDA) share.

A leaf module: it imports nothing of MatteFlow, Celery or Redis, so ``app``, ``client``, ``reconcile`` and
``matteflow.metrics`` can all import it without importing each other.

Why lanes are queues and not message priorities: kombu's Redis transport keeps a prioritised queue as several lists
(``<queue>``, ``<queue>\\x06\\x163``, ...), so anything that counts one list (KEDA's redis scaler, an operator's
``LLEN``) misses the rest, and a batch sent with priority 6 was invisible to the autoscaler. Each kind of
work now has its own plain list, named ``<base>.<lane>``; a worker consumes them all in lane order
(``queue_order_strategy=priority`` in ``app.celery_config``), and every list can be counted with one ``LLEN``.

Why a bulk lane: one FIFO list for every batch made a 20-photo batch wait behind every image of a
10,000-photo batch sent a minute earlier. Batches of ``Settings.bulk_batch_from`` images or more go to their
own lane, served when no smaller batch is waiting: small batches overtake big ones, big ones still have the
whole pool whenever nothing smaller waits, and among themselves take turns (a window of each at a time in the
bulk list: ``window.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any, Protocol

PROCESS_TASK = "matteflow.process_images"
FINALIZE_TASK = "matteflow.finalize_batch"
NOTIFY_TASK = "matteflow.notify_job"  # a finished job's callback (workers/callbacks.py)
REZIP_TASK = "matteflow.rezip_batch"  # a done batch's ZIP written again after an item's result was replaced
TASKS_MODULE = "matteflow.workers.tasks"

# Lanes, in the order a worker serves them: someone is waiting on an interactive task (one-image
# `POST /matte`, a batch's ZIP), while batch items only need throughput, and the images of big batches
# (bulk) can wait for the small ones.
INTERACTIVE = "interactive"
BATCH = "batch"
BULK = "bulk"
LANES = (INTERACTIVE, BATCH, BULK)

# A message header with the wall-clock time of the send, so the exporter can tell how long the oldest task
# has waited and a worker how long each task did (Celery's protocol carries no send time of its own).
ENQUEUED_AT_HEADER = "matteflow_enqueued_at"

# kombu's Redis transport keeps every delivered-but-unacknowledged message (a task a worker is running or
# has prefetched) in this hash until the ack; with acks_late that is the work in flight.
UNACKED_KEY = "unacked"


def queue_name(base: str, lane: str) -> str:
    """The Redis list of one lane: ``<base>.<lane>`` (``base`` is ``Settings.worker_queue``)."""
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r} (use one of {', '.join(LANES)})")
    return f"{base}.{lane}"


def consumed_queues(base: str) -> tuple[str, ...]:
    """Every queue of a deployment, in the order a worker serves them (interactive first)."""
    return tuple(queue_name(base, lane) for lane in LANES)


def lane_for_job(kind: str, total: int, bulk_from: int) -> str:
    """The lane of a job's image tasks: a one-image request (``single``) is interactive; a batch of at least
    ``bulk_from`` images (0: never) is bulk; any other batch is batch."""
    if kind == "single":
        return INTERACTIVE
    return BULK if 0 < bulk_from <= total else BATCH


def queue_for_job(base: str, kind: str, total: int, bulk_from: int) -> str:
    """Where a job's image tasks go (:func:`lane_for_job`)."""
    return queue_name(base, lane_for_job(kind, total, bulk_from))


def finalize_queue(base: str) -> str:
    """A batch's ZIP is short work someone is polling for: it does not wait behind other batches."""
    return queue_name(base, INTERACTIVE)


def enqueue_headers(now: float | None = None) -> dict[str, float]:
    """Headers every MatteFlow send adds (``send_task(..., headers=enqueue_headers())``)."""
    return {ENQUEUED_AT_HEADER: time.time() if now is None else now}


def message_enqueued_at(raw: bytes | str | None) -> float | None:
    """The send time of a raw message as kombu's Redis transport stores it in a queue list, or None when
    there is no message or it carries no such header (sent by an older release, or by hand)."""
    if not raw:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(ENQUEUED_AT_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


class _ListCounter(Protocol):
    def pipeline(self, transaction: bool = ...) -> Any: ...


def queue_lengths(client: _ListCounter, base: str) -> dict[str, int]:
    """Tasks waiting in each queue (``LLEN``), read in one round trip. Raises the client's errors."""
    queues = consumed_queues(base)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
    return {queue: int(n) for queue, n in zip(queues, pipe.execute(), strict=True)}


def broker_queue_length(client: _ListCounter, base: str) -> int:
    """Tasks waiting in all of a deployment's queues (not those a worker already holds)."""
    return sum(queue_lengths(client, base).values())


def _process_task_items(raw: bytes | str) -> tuple[str, list[int]] | None:
    """(job id, item indices) of an image task as kombu's Redis transport stores it in a queue list (a JSON
    envelope; Celery's protocol 2 body ``[args, kwargs, embed]``, base64-encoded); None for anything else."""
    try:
        message = json.loads(raw)
        if message.get("headers", {}).get("task") != PROCESS_TASK:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        job_id, indices = json.loads(body)[0][:2]
        return str(job_id), [int(i) for i in indices]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, binascii.Error):
        return None


def waiting_items(client: Any, base: str) -> dict[str, set[int]]:
    """The items that have an image task waiting in one of the deployment's queues, by job: what a stalled
    job must not send again. Reads every queue list whole; with the bulk lane's windows (window.py) the
    lists hold the small batches and a window of each big one, not whole backlogs. Raises the client's errors."""
    pipe = client.pipeline(transaction=False)
    for queue in consumed_queues(base):
        pipe.lrange(queue, 0, -1)
    waiting: dict[str, set[int]] = {}
    for messages in pipe.execute():
        for raw in messages:
            found = _process_task_items(raw)
            if found is not None:
                waiting.setdefault(found[0], set()).update(found[1])
    return waiting
