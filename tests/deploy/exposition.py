"""What the code exports: sample names of the web and worker expositions, for the dashboard/alert checks."""

from __future__ import annotations

import sys
import types

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from matteflow import metrics
from matteflow.settings import Settings

# Exported by more than one kind of process on purpose: images failing the web's intake check are counted
# by the web, the others by the workers; image URLs are read by the web for /matte and by the workers for
# jobs. They are counters, and queries sum them. Everything else has exactly one source.
SHARED = {"matteflow_items_total", "matteflow_image_fetches_total", "matteflow_image_fetch_bytes_total"}


def sample_names(text: str) -> set[str]:
    """Every sample name of an exposition (histograms give _bucket/_sum/_count, counters _total)."""
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def touch_labelled_metrics() -> None:
    """Create a child of each labelled metric so it appears (no increments: other tests may read them)."""
    metrics.JOBS_TOTAL.labels(state="failed")
    metrics.ITEMS_TOTAL.labels(state="done")
    for stage in metrics.STAGES:
        metrics.STAGE_SECONDS.labels(stage=stage)
    metrics.HTTP_REQUESTS_TOTAL.labels(method="GET", endpoint="/healthz", status="200")
    metrics.HTTP_REQUEST_SECONDS.labels(method="GET", endpoint="/healthz")
    metrics.QUEUE_WAIT_SECONDS.labels(queue="matteflow.batch")
    metrics.TASKS_TOTAL.labels(task="matteflow.process_images", state="success")
    metrics.RESULT_CONFIDENCE.labels(model="people")
    for reason in metrics.RESEND_REASONS:
        metrics.RESENT_TOTAL.labels(reason=reason)


def fake_nvml_module() -> types.ModuleType:
    """nvidia-ml-py's calls used by GpuMemoryCollector, answering for one 16 GiB GPU."""
    module = types.ModuleType("pynvml")
    module.NVMLError = type("NVMLError", (Exception,), {})
    module.nvmlInit = lambda: None
    module.nvmlDeviceGetCount = lambda: 1
    module.nvmlDeviceGetHandleByIndex = lambda index: index
    module.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(used=1 << 30, total=16 << 30)
    return module


def worker_exposition(settings: Settings) -> str:
    """A worker's /metrics text as on a GPU machine (NVML answered by :func:`fake_nvml_module`)."""
    saved = sys.modules.get("pynvml")
    sys.modules["pynvml"] = fake_nvml_module()
    try:
        touch_labelled_metrics()
        return generate_latest(metrics.worker_registry(settings)).decode()
    finally:
        if saved is None:
            sys.modules.pop("pynvml", None)
        else:
            sys.modules["pynvml"] = saved
