"""matteflow.metrics: every metric reaches an exposition, collectors read real sources, and a missing
GPU or Redis never breaks a scrape."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import types
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from matteflow import metrics
from matteflow.settings import Settings

from .exposition import touch_labelled_metrics

PRIORITY_SEPARATOR = "\x06\x16"


def families(registry: CollectorRegistry) -> dict[str, object]:
    """Parse an exposition with prometheus_client's own parser: name -> family."""
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    for family in families(registry).values():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_web_registry_exposes_every_metric_with_its_type(redis_client) -> None:
    touch_labelled_metrics()
    settings = Settings(redis_url="redis://unused:6379/0")
    found = families(metrics.web_registry(settings, redis_client=redis_client))
    expected = {
        # the parser names counters without their _total suffix
        "matteflow_jobs": "counter",
        "matteflow_items": "counter",
        "matteflow_task_retries": "counter",
        "matteflow_stage_seconds": "histogram",
        "matteflow_item_seconds": "histogram",
        "matteflow_http_requests": "counter",
        "matteflow_http_request_seconds": "histogram",
        "matteflow_upload_bytes": "counter",
        "matteflow_worker_rss_bytes": "gauge",
        "matteflow_queue_length": "gauge",
        "matteflow_redis_up": "gauge",
    }
    assert {name: found[name].type for name in expected if name in found} == expected
    stages = {s.labels["stage"] for s in found["matteflow_stage_seconds"].samples}
    assert stages == set(metrics.STAGES)


def test_metric_names_follow_house_rules() -> None:
    """matteflow_ prefix, a unit suffix on measured quantities, no per-job labels."""
    registry = CollectorRegistry()
    registry.register(metrics._CollectorsView([metrics.make_registry()]))
    touch_labelled_metrics()
    banned_labels = {"job", "job_id", "id", "file", "filename", "name", "path"}
    for family in families(registry).values():
        if not family.name.startswith("matteflow_"):
            continue  # python_/process_ defaults of prometheus_client
        for sample in family.samples:
            assert not banned_labels & set(sample.labels), sample
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


def test_queue_length_counts_base_and_priority_lists(redis_client) -> None:
    redis_client.rpush("matteflow", *[b"m"] * 3)
    redis_client.rpush(f"matteflow{PRIORITY_SEPARATOR}3", b"m")
    redis_client.rpush(f"matteflow{PRIORITY_SEPARATOR}9", b"m", b"m")
    redis_client.rpush("other", b"m")  # a queue not asked for is not reported
    registry = CollectorRegistry()
    registry.register(metrics.QueueLengthCollector(redis_client, ["matteflow", "empty"]))
    assert sample_value(registry, "matteflow_queue_length", queue="matteflow") == 6
    assert sample_value(registry, "matteflow_queue_length", queue="empty") == 0
    assert sample_value(registry, "matteflow_queue_length", queue="other") is None
    assert sample_value(registry, "matteflow_redis_up") == 1
    redis_client.lpop("matteflow")
    assert sample_value(registry, "matteflow_queue_length", queue="matteflow") == 5


def test_queue_length_sees_celery_messages_sent_with_no_worker(redis_client, redis_url) -> None:
    """The list names are Celery's own: send tasks (one with a priority) and count them."""
    from celery import Celery

    app = Celery("probe", broker=redis_url, set_as_current=False)
    for _ in range(4):
        app.send_task("matteflow.process_image", args=("job", 0), queue="matteflow")
    app.send_task("matteflow.process_image", args=("job", 1), queue="matteflow", priority=5)
    app.close()
    registry = CollectorRegistry()
    registry.register(metrics.QueueLengthCollector(redis_url, ["matteflow"]))
    assert sample_value(registry, "matteflow_queue_length", queue="matteflow") == 5
    # the prioritised message went to a separate list, which is why all of them are counted
    assert redis_client.llen("matteflow") == 4


def test_queue_length_without_redis_reports_down_and_does_not_raise(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(metrics.QueueLengthCollector(f"unix://{tmp_path}/no.sock", ["matteflow"]))
    assert sample_value(registry, "matteflow_redis_up") == 0
    assert "matteflow_queue_length" not in families(registry)


def test_registering_the_queue_collector_does_not_touch_redis(tmp_path: Path) -> None:
    # describe() is used at registration; a dead URL must not delay or fail app start-up.
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics.QueueLengthCollector(f"unix://{tmp_path}/no.sock", ["q"]))


def fake_nvml(devices: list[tuple[int, int]], fail_init: bool = False) -> types.ModuleType:
    """A stand-in for nvidia-ml-py with the calls the collector uses (no GPU on the test machine)."""
    module = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init() -> None:
        if fail_init:
            raise NVMLError("Driver Not Loaded")

    module.NVMLError = NVMLError
    module.nvmlInit = init
    module.nvmlDeviceGetCount = lambda: len(devices)
    module.nvmlDeviceGetHandleByIndex = lambda i: i
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        used=devices[h][0], total=devices[h][1], free=devices[h][1] - devices[h][0]
    )
    return module


def test_gpu_collector_without_nvml_package_yields_nothing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert list(metrics.GpuMemoryCollector().collect()) == []


def test_gpu_collector_without_driver_yields_nothing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([], fail_init=True))
    collector = metrics.GpuMemoryCollector()
    assert list(collector.collect()) == []
    assert list(collector.collect()) == []  # and does not retry NVML at every scrape


def test_gpu_collector_reports_each_device(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([(1 << 30, 16 << 30), (0, 80 << 30)]))
    registry = CollectorRegistry()
    registry.register(metrics.GpuMemoryCollector())
    assert sample_value(registry, "matteflow_gpu_memory_used_bytes", device="0") == 1 << 30
    assert sample_value(registry, "matteflow_gpu_memory_total_bytes", device="0") == 16 << 30
    assert sample_value(registry, "matteflow_gpu_memory_total_bytes", device="1") == 80 << 30


def test_gpu_collector_with_real_nvml_when_a_gpu_exists() -> None:
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py not installed (the gpu extra)")
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVIDIA driver/GPU here: {exc}")
    if count == 0:
        pytest.skip("NVML found no GPU")
    registry = CollectorRegistry()
    registry.register(metrics.GpuMemoryCollector())
    total = sample_value(registry, "matteflow_gpu_memory_total_bytes", device="0")
    used = sample_value(registry, "matteflow_gpu_memory_used_bytes", device="0")
    assert total is not None and total > 1 << 30
    assert used is not None and 0 <= used <= total


def test_update_worker_rss_sets_this_process_rss() -> None:
    import psutil

    rss = metrics.update_worker_rss()
    assert rss == pytest.approx(psutil.Process().memory_info().rss, rel=0.2)
    assert metrics.WORKER_RSS_BYTES._value.get() == rss


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_worker_metrics_server_serves_worker_metrics_over_http() -> None:
    settings = Settings(worker_metrics_port=free_port(), worker_queue="matteflow")
    metrics.start_worker_metrics_server(settings, host="127.0.0.1")
    url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = {f.name: f for f in text_string_to_metric_families(text)}
    up = found["matteflow_worker_up"].samples
    assert [(s.labels, s.value) for s in up] == [({"queue": "matteflow"}, 1.0)]
    assert found["matteflow_worker_rss_bytes"].samples[0].value > 10_000_000  # refreshed at scrape
    assert "matteflow_stage_seconds" in found


def test_worker_metrics_server_on_a_busy_port_logs_instead_of_crashing(caplog) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = Settings(worker_metrics_port=busy.getsockname()[1])
        metrics.start_worker_metrics_server(settings, host="127.0.0.1")  # must not raise
    assert "worker metrics not served" in caplog.text


def test_worker_metrics_server_port_zero_means_off(caplog, monkeypatch) -> None:
    started = []
    monkeypatch.setattr(metrics, "start_http_server", lambda *a, **k: started.append(a))
    caplog.set_level("INFO", logger="matteflow.metrics")
    metrics.start_worker_metrics_server(Settings(worker_metrics_port=0))
    assert started == [] and "off" in caplog.text


MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os, sys
    from pathlib import Path
    from matteflow import metrics

    directory = metrics.prepare_multiprocess_dir()
    names = sorted(p.name for p in directory.iterdir())
    assert "counter_999999.db" not in names, names      # a stale file of an earlier run is gone
    assert any(n.endswith(f"_{os.getpid()}.db") for n in names), names  # our own files stay

    def child():
        metrics.ITEMS_TOTAL.labels(state="done").inc(2)
        metrics.STAGE_SECONDS.labels(stage="inference").observe(0.3)
        metrics.update_worker_rss()

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=child) for _ in range(3)]
    for p in procs: p.start()
    for p in procs: p.join()

    def value(name, **labels):
        return metrics.make_registry().get_sample_value(name, labels)

    assert value("matteflow_items_total", state="done") == 6, value("matteflow_items_total", state="done")
    assert value("matteflow_stage_seconds_count", stage="inference") == 3
    assert value("matteflow_worker_rss_bytes") > 0
    for p in procs:
        metrics.mark_process_dead(p.pid)
    assert value("matteflow_worker_rss_bytes") in (None, 0.0)   # dead children's RSS forgotten
    assert value("matteflow_items_total", state="done") == 6    # their counts are not
    print("ok")
    """
)


def test_multiprocess_mode_aggregates_forked_children(tmp_path: Path) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"\0" * 16)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_import_creates_missing_multiprocess_dir(tmp_path: Path) -> None:
    directory = tmp_path / "not" / "yet"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "import matteflow.metrics"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert directory.is_dir()
