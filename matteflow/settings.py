"""One settings object, read once from ``MATTEFLOW_*`` environment variables at each entry point."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PREFIX = "MATTEFLOW_"
ENCODE_POOLS = ("threads", "processes")  # how a GPU worker encodes results: core/encode_pool.py


class SettingsError(ValueError):
    """A ``MATTEFLOW_*`` variable with a value that cannot be used; the message names the variable."""


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may really use: the cores it is allowed to run on, capped by the container's CPU
    limit (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``).

    ``os.cpu_count()`` is the node's core count: a pod limited to 2 CPUs on a 64-core node would start 64
    pool processes or onnxruntime threads and spend its quota on throttling.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_cpu_quota(root: Path) -> float | None:
    """The CPU limit in CPUs, or None when there is none (or no cgroup file to read)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # v2: "<quota|max> <period>"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())  # v1: -1 = no limit
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def _default_concurrency() -> int:
    return usable_cpus()


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with defaults for one machine.

    Each field maps to ``MATTEFLOW_<FIELD NAME IN CAPITALS>``. Build it with :meth:`from_env` at an entry
    point (CLI, web app factory, worker) and pass it down; tests build their own with :meth:`replace`.
    """

    redis_url: str = ""  # empty: `matteflow up` starts an embedded Redis
    storage_dir: Path = Path("var")
    # The networks behind the model names a request chooses from (option `model`: auto | people | general):
    # load_model specs, default | onnx:<path> | torch:<path> for people, general | onnx:<path> for general.
    model: str = "default"
    general_model: str = "general"
    # The model a request gets when it names none (auto | people | general | ensemble): `ensemble` on a
    # deployment with the compute for both networks gives every client the best quality by default.
    default_model: str = "auto"
    device: str = "auto"  # auto | cpu | cuda | cuda:<n>
    max_upload_mb: int = 200
    max_pixels: int = 60_000_000  # ~ 7746 x 7746; checked from the header before decoding
    max_files_per_job: int = 5000
    result_ttl_hours: float = 24 * 7
    worker_concurrency: int = field(default_factory=_default_concurrency)
    worker_queue: str = "matteflow"
    worker_max_tasks_per_child: int = 2000
    worker_metrics_port: int = 9808
    worker_metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, where Prometheus scrapes the pod IP
    worker_heartbeat_interval_s: float = 10.0  # the consumer's beat; /livez fails after 4 missed beats
    # `matteflow up` probes its worker's /livez like the Kubernetes livenessProbe (deploy/k8s/base/worker.yaml)
    # and restarts a worker that failed this many probes in a row: a frozen or wedged worker, not only a dead one.
    worker_liveness_period_s: float = 20.0
    worker_liveness_failures: int = 3
    # `matteflow exporter` (and `matteflow up`) serve the queue metrics here; one per deployment.
    queue_metrics_port: int = 9809
    queue_metrics_host: str = "127.0.0.1"
    task_time_limit_s: int = 300
    task_max_retries: int = 5
    gpu_batch_size: int = 8
    single_image_timeout_s: float = 120.0
    web_host: str = "127.0.0.1"
    web_port: int = 7860
    web_threads: int = 32  # request threads; a single-image call waiting on its worker holds one
    # The intake under hostile load (docs/operations.md, "Web server"): connections in all and per client
    # address, how long an idle keep-alive connection stays, how long a client may take to send its headers,
    # and the slowest average upload rate accepted after that.
    web_connection_limit: int = 1000
    web_client_connection_limit: int = 64  # 0 = no per-client limit (raise it behind a proxy or NAT)
    web_idle_timeout_s: int = 15
    web_header_timeout_s: float = 10.0
    web_min_upload_kib_s: int = 16
    matte_max_in_flight: int = 24  # POST /api/v1/matte calls waiting at once; more get 503 + Retry-After
    # On SIGTERM the web stops accepting and lets requests in progress finish for this long: at least the
    # synchronous single-image wait (the pod's terminationGracePeriodSeconds must cover it, plus preStop).
    web_shutdown_grace_s: float = 130.0
    reconcile_interval_s: float = 30.0
    # Distributed pipeline (workers/). The broker hides a delivered-but-unacked task for this long before
    # handing it to another worker: it must exceed the longest task (time limit + retry countdown).
    broker_visibility_timeout_s: float = 3600.0
    task_retry_backoff_s: float = 2.0  # first retry after ~this, doubling per attempt (with jitter)
    task_retry_backoff_max_s: float = 120.0
    # Images per task. 0 = auto: gpu_batch_size when the device is CUDA (the worker batches a task's images
    # through the network and the device post-processing), else 1. Resolved when the settings are built.
    task_chunk_size: int = 0
    # A batch job of at least this many images goes to the bulk lane, served after the batch lane: a batch of
    # 20 photos does not wait behind someone's 10,000 (workers/queues.py). 0 = one lane for every batch.
    bulk_batch_from: int = 200
    # Tasks of one bulk-lane batch in the queue or running at once: big batches take turns instead of the
    # second waiting for every image of the first (workers/window.py). 0 = all at once, first come first served.
    bulk_window: int = 64
    postprocess: str = "auto"  # auto (torch on a CUDA device, else numpy/OpenCV) | numpy | torch
    encode_processes: int = 0  # encoders of a device-post-processing worker (0 = one per core)
    # threads (OpenCV encodes without the GIL; nothing to pickle) | processes (spawned; threads all the same
    # inside a daemonic prefork child). Threads: 1.35x the PNG encodes per second of processes on 2 cores and
    # half the worker's GIL time per image (bench/README.md, section 5).
    encode_pool: str = "threads"
    worker_max_memory_mb: int = 2048  # a pool process past this RSS is replaced after its task (0 = no limit)
    # Peak memory one image may need while it is processed, estimated from its header (core.imageio):
    # above it an image is refused (413) unless max_side brings its working size under it.
    max_image_memory_mb: int = 1536
    worker_pool: str = ""  # celery pool: "" = threads on a GPU, prefork on the CPU; or prefork | threads | solo
    embedded_redis_port: int = 0  # `matteflow up`'s own Redis when redis_url is empty (0 = any free port)
    # An unfinished job with no progress this long has its open items that are neither leased nor waiting in a
    # queue re-sent (their messages were lost with Redis, or held by a worker that died before starting them).
    job_stale_after_s: float = 60.0
    # A batch sent in several requests (open=true) that gets no files and is not closed for this long is closed
    # by the reconciler with the files it has (its sender died or forgot): its images are processed and zipped.
    open_job_idle_s: float = 3600.0
    # Item leases (workers/leases.py): a running item's lease lasts this long and its worker renews it every
    # third of it; the watchdog looks for expired ones every lease_check_interval_s. A dead or frozen worker's
    # items are back in the queue within item_lease_s + lease_check_interval_s.
    item_lease_s: float = 30.0
    lease_check_interval_s: float = 5.0
    log_level: str = "INFO"
    # Optional LLM interpreter for instructions (any OpenAI-compatible chat endpoint); unset: offline only.
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    llm_timeout_s: float = 10.0
    # Optional API keys (comma-separated). Jobs created with a key are listed by GET /api/v1/jobs under that
    # key only; without keys the server keeps no listable index (clients list the ids they hold).
    api_keys: str = ""
    # Job-finished callbacks (webhooks, workers/callbacks.py): the hosts a job's callback_url may name
    # (comma-separated host or host:port; empty: callbacks are off, since a server that POSTs to any URL a
    # client names is a request forgery relay), the HMAC-SHA256 key that signs each body, the public base URL
    # the body's links start with, and how long / how often a delivery is tried.
    callback_hosts: str = ""
    callback_secret: str = ""
    public_url: str = ""
    callback_timeout_s: float = 10.0
    callback_max_attempts: int = 8
    # Images named by URL (image_url, matteflow/fetch.py): the hosts the web and workers may read them from
    # (comma-separated host, host:port or .domain; "*" = any host whose addresses are all public; empty: image
    # URLs are off), and how long one image may take to arrive.
    fetch_hosts: str = ""
    fetch_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        # Absolute once, here: child processes (Redis runs in its data dir) must all see the same folder.
        object.__setattr__(self, "storage_dir", Path(self.storage_dir).expanduser().absolute())
        from matteflow.core.errors import InvalidOptionError
        from matteflow.core.registry import parse_model_name

        try:  # a typo here would otherwise surface as a 400 on every request
            object.__setattr__(self, "default_model", parse_model_name(self.default_model))
        except InvalidOptionError as exc:
            raise SettingsError(f"{PREFIX}DEFAULT_MODEL: {exc}") from None
        if self.bulk_batch_from < 0:
            raise SettingsError(
                f"{PREFIX}BULK_BATCH_FROM must be 0 (off) or a number of images, got {self.bulk_batch_from}"
            )
        if self.encode_pool not in ENCODE_POOLS:
            raise SettingsError(f"{PREFIX}ENCODE_POOL must be {' or '.join(ENCODE_POOLS)}, got {self.encode_pool!r}")
        if self.bulk_window < 0:
            raise SettingsError(f"{PREFIX}BULK_WINDOW must be 0 (off) or a number of tasks, got {self.bulk_window}")
        if self.task_chunk_size <= 0:
            chunk = self.gpu_batch_size if str(self.device).startswith("cuda") else 1
            object.__setattr__(self, "task_chunk_size", max(1, chunk))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from ``environ`` (default ``os.environ``); ``overrides`` win over both."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def jobs_dir(self) -> Path:
        return Path(self.storage_dir) / "jobs"


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        return raw
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from exc
