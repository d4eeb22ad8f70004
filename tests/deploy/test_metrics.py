"""matteflow.metrics: every metric reaches an exposition, collectors read real sources, and a missing
GPU or Redis never breaks a scrape."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from matteflow import metrics
from matteflow.settings import Settings
from matteflow.workers.client import JobClient
from matteflow.workers.queues import UNACKED_KEY, consumed_queues

from .exposition import touch_labelled_metrics


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


def matteflow_families(registry: CollectorRegistry) -> dict[str, str]:
    """MatteFlow's families (without the parser's ``*_created`` companions of counters/histograms)."""
    found = families(registry).items()
    return {name: f.type for name, f in found if name.startswith("matteflow_") and not name.endswith("_created")}


def test_each_process_exports_its_own_metrics_with_their_types(redis_client, tmp_path: Path) -> None:
    """The web its HTTP/intake metrics, a worker the processing ones, the exporter the queues: nothing is
    exported as a zero by a process that never updates it, nor twice by several processes."""
    touch_labelled_metrics()
    settings = Settings(redis_url="redis://unused:6379/0", storage_dir=tmp_path)
    # the parser names counters without their _total suffix
    assert matteflow_families(metrics.web_registry(settings, redis_client=redis_client)) == {
        "matteflow_items": "counter",  # uploads failing the intake check
        "matteflow_http_requests": "counter",
        "matteflow_http_request_seconds": "histogram",
        "matteflow_upload_bytes": "counter",
        "matteflow_image_fetches": "counter",
        "matteflow_image_fetch_bytes": "counter",
    }
    worker = matteflow_families(metrics.worker_registry(settings))
    assert {
        "matteflow_jobs": "counter",
        "matteflow_items": "counter",
        "matteflow_task_retries": "counter",
        "matteflow_resent": "counter",
        "matteflow_callbacks": "counter",
        "matteflow_tasks": "counter",
        "matteflow_stage_seconds": "histogram",
        "matteflow_item_seconds": "histogram",
        "matteflow_queue_wait_seconds": "histogram",
        "matteflow_worker_rss_bytes": "gauge",
        "matteflow_worker_up": "gauge",
        "matteflow_image_fetches": "counter",
        "matteflow_image_fetch_bytes": "counter",
    }.items() <= worker.items()
    assert not {"matteflow_queue_length", "matteflow_tasks_in_flight", "matteflow_redis_up"} & set(worker)
    assert matteflow_families(metrics.queue_registry(settings, redis_client=redis_client)) == {
        "matteflow_queue_length": "gauge",
        "matteflow_queue_oldest_age_seconds": "gauge",
        "matteflow_tasks_in_flight": "gauge",
        "matteflow_tasks_held_back": "gauge",
        "matteflow_redis_up": "gauge",
        "matteflow_redis_memory_used_bytes": "gauge",
        "matteflow_redis_memory_max_bytes": "gauge",
        "matteflow_redis_persistence_ok": "gauge",
        "matteflow_storage_used_bytes": "gauge",
        "matteflow_storage_capacity_bytes": "gauge",
    }
    found = families(metrics.worker_registry(settings))
    assert {s.labels["stage"] for s in found["matteflow_stage_seconds"].samples} == set(metrics.STAGES)


def test_every_metric_object_is_served_by_some_process() -> None:
    """A metric defined here but in neither WEB_METRICS nor WORKER_METRICS would be exported by nobody."""
    touch_labelled_metrics()
    defined = {f.name for f in metrics.make_registry().collect() if f.name.startswith("matteflow_")}
    assert defined and defined <= metrics.WEB_METRICS | metrics.WORKER_METRICS, defined


# Histograms of a score with no unit (the result confidence is a number in [0, 1]): nothing to suffix.
UNITLESS_HISTOGRAMS = {"matteflow_result_confidence"}


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
        if family.type == "histogram" and family.name not in UNITLESS_HISTOGRAMS:
            assert family.name.endswith("_seconds"), family.name


def test_queue_registry_counts_each_lane_and_the_work_in_flight(redis_client) -> None:
    interactive, batch, _bulk = consumed_queues("matteflow")
    redis_client.rpush(batch, *[b"m"] * 3)
    redis_client.rpush(interactive, b"m")
    redis_client.rpush("matteflow", b"m")  # not a queue of this design: not reported
    redis_client.hset(UNACKED_KEY, mapping={"tag-1": b"m", "tag-2": b"m"})  # delivered, not yet acked
    registry = metrics.queue_registry(Settings(worker_queue="matteflow"), redis_client=redis_client)
    assert sample_value(registry, "matteflow_queue_length", queue=batch) == 3
    assert sample_value(registry, "matteflow_queue_length", queue=interactive) == 1
    assert sample_value(registry, "matteflow_queue_length", queue="matteflow") is None
    assert sample_value(registry, "matteflow_tasks_in_flight") == 2
    assert sample_value(registry, "matteflow_redis_up") == 1
    redis_client.lpop(batch)
    assert sample_value(registry, "matteflow_queue_length", queue=batch) == 2
    # raw messages without MatteFlow's send-time header: their age is unknown, reported as 0
    assert sample_value(registry, "matteflow_queue_oldest_age_seconds", queue=batch) == 0


def test_exporter_reports_redis_memory_persistence_and_storage(redis_client, tmp_path: Path) -> None:
    import shutil

    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "big.bin").write_bytes(b"\0" * (1 << 20))
    registry = metrics.queue_registry(Settings(storage_dir=tmp_path), redis_client=redis_client)
    assert sample_value(registry, "matteflow_redis_memory_used_bytes") == pytest.approx(
        redis_client.info("memory")["used_memory"], rel=0.5
    )
    assert sample_value(registry, "matteflow_redis_memory_max_bytes") == redis_client.info("memory")["maxmemory"]
    assert sample_value(registry, "matteflow_redis_persistence_ok") == 1  # the test Redis writes its AOF fine
    usage = shutil.disk_usage(tmp_path)
    assert sample_value(registry, "matteflow_storage_capacity_bytes") == usage.total
    assert 0 < sample_value(registry, "matteflow_storage_used_bytes") <= usage.total


def test_exporter_without_redis_or_storage_still_answers(tmp_path: Path) -> None:
    settings = Settings(redis_url=f"unix://{tmp_path}/no.sock", storage_dir=tmp_path / "missing")
    found = families(metrics.queue_registry(settings))
    assert sample_value(metrics.queue_registry(settings), "matteflow_redis_up") == 0
    assert not {"matteflow_redis_memory_used_bytes", "matteflow_storage_used_bytes"} & set(found)


def test_oldest_age_is_read_from_the_oldest_message(redis_client) -> None:
    """kombu pushes on the left and pops on the right: the oldest waiting message is the last element."""
    import json
    import time

    from matteflow.workers.queues import ENQUEUED_AT_HEADER

    interactive, batch, _bulk = consumed_queues("matteflow")
    now = time.time()
    for age in (90, 30, 5):  # sent oldest first, as a producer would
        redis_client.lpush(batch, json.dumps({"body": "", "headers": {ENQUEUED_AT_HEADER: now - age}}))
    registry = metrics.queue_registry(Settings(worker_queue="matteflow"), redis_client=redis_client)
    assert 90 <= sample_value(registry, "matteflow_queue_oldest_age_seconds", queue=batch) < 100
    assert sample_value(registry, "matteflow_queue_oldest_age_seconds", queue=interactive) == 0


def test_queue_registry_counts_what_the_client_really_sends(redis_client, redis_url, tmp_path: Path, make_jpeg) -> None:
    """Batch items, one-image requests and a batch's finalisation each land in a list the registry (and
    KEDA, tests/deploy/test_k8s.py) counts, and in no other Redis list: no kombu priority sub-lists."""
    from matteflow.core.options import parse_options

    settings = Settings(redis_url=redis_url, storage_dir=tmp_path, worker_queue="matteflow", bulk_batch_from=5)
    client = JobClient(settings, redis_client)
    client.create_job([(f"p{i}.jpg", make_jpeg(seed=i)) for i in range(5)], parse_options({}), kind="batch")
    client.create_job([(f"q{i}.jpg", make_jpeg(seed=i)) for i in range(4)], parse_options({}), kind="batch")
    client.create_job([("one.jpg", make_jpeg(seed=9))], parse_options({}), kind="single")
    client.create_job([("bad.jpg", b"not an image")], parse_options({}), kind="batch")  # only its finalisation
    interactive, batch, bulk = consumed_queues("matteflow")
    registry = metrics.queue_registry(settings, redis_client=redis_client)
    assert sample_value(registry, "matteflow_queue_length", queue=bulk) == 5  # a batch of bulk_batch_from images
    assert sample_value(registry, "matteflow_queue_length", queue=batch) == 4
    assert sample_value(registry, "matteflow_queue_length", queue=interactive) == 2
    lists = {key.decode() for key in redis_client.scan_iter() if redis_client.type(key) == b"list"}
    assert lists == {interactive, batch, bulk}, lists
    assert client.queue_length() == 11
    # every message carries its send time, so the exporter can say how long work has waited
    assert 0 <= sample_value(registry, "matteflow_queue_oldest_age_seconds", queue=batch) < 60


def test_queue_length_without_redis_reports_down_and_does_not_raise(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(metrics.QueueLengthCollector(f"unix://{tmp_path}/no.sock", ["matteflow"]))
    assert sample_value(registry, "matteflow_redis_up") == 0
    assert "matteflow_queue_length" not in families(registry)
    assert "matteflow_tasks_in_flight" not in families(registry)


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


def test_update_worker_rss_sets_this_process_proportional_memory() -> None:
    """PSS, not RSS: summed over a prefork worker's processes, RSS counts the pages they share once each."""
    import psutil

    used = metrics.update_worker_rss()
    process = psutil.Process()
    assert used == pytest.approx(process.memory_full_info().pss, rel=0.2)
    assert used <= process.memory_info().rss * 1.05
    assert metrics.WORKER_RSS_BYTES._value.get() == used


def test_summed_memory_of_forked_processes_counts_shared_pages_once(tmp_path: Path) -> None:
    """A parent holding 200 MB and three forked children that only read it: the sum the worker reports stays
    near 200 MB (PSS), where RSS would report about 800 MB."""
    script = textwrap.dedent(
        """
        import multiprocessing, os
        from matteflow import metrics
        metrics.prepare_multiprocess_dir()
        block = bytearray(os.urandom(200 * 2**20))  # touched: resident in the parent
        def child(ready, done):
            sum(block[::4096])  # read every page: resident in the child too, but shared
            metrics.update_worker_rss()
            ready.set(); done.wait(30)
        ctx = multiprocessing.get_context("fork")
        done = ctx.Event()
        events = [ctx.Event() for _ in range(3)]
        procs = [ctx.Process(target=child, args=(e, done)) for e in events]
        for p in procs: p.start()
        for e in events: e.wait(30)
        metrics.update_worker_rss()
        total = metrics.make_registry().get_sample_value("matteflow_worker_rss_bytes")
        done.set()
        for p in procs: p.join()
        print(int(total))
        """
    )
    directory = tmp_path / "prom"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    total = int(result.stdout.strip())
    assert 200 * 2**20 < total < 2 * 200 * 2**20, f"{total / 2**20:.0f} MiB for one 200 MiB block"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_worker_metrics_server_serves_worker_metrics_and_checks_over_http() -> None:
    settings = Settings(worker_metrics_port=free_port(), worker_queue="matteflow")
    state = {"live": (True, "beat 1s ago")}
    metrics.start_worker_metrics_server(settings, checks={"/livez": lambda: state["live"]})
    base = f"http://127.0.0.1:{settings.worker_metrics_port}"  # settings.worker_metrics_host by default
    assert settings.worker_metrics_host == "127.0.0.1"  # not every interface of a laptop
    assert get(f"{base}/livez") == (200, "ok: beat 1s ago\n")
    state["live"] = (False, "the consumer last beat 90s ago")
    assert get(f"{base}/livez") == (503, "failing: the consumer last beat 90s ago\n")
    status, text = get(f"{base}/metrics")
    assert status == 200
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
    monkeypatch.setattr(metrics, "_serve_in_thread", lambda *a, **k: started.append(a))
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
