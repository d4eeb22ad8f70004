"""Pure pieces of the pipeline: names, archive naming, settings checks (no Redis, no worker)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from matteflow.files import sanitize_name, write_atomic
from matteflow.settings import Settings
from matteflow.workers.aggregate import UniqueNames, zip_download_name
from matteflow.workers.app import celery_config
from matteflow.workers.jobstore import chunked
from matteflow.workers.storage import is_valid_job_id
from matteflow.workers.tasks import backoff_seconds


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("../../x.jpg", "x.jpg"),
        ("C:\\Users\\ann\\photo 1.JPG", "photo 1.JPG"),
        ("/etc/passwd", "passwd"),
        ("..", "image"),
        ("", "image"),
        ("na\x00me;rm -rf.png", "na_me_rm -rf.png"),
        (".hidden.jpg", "hidden.jpg"),
    ],
)
def test_sanitize_name_keeps_only_a_safe_base_name(given: str, stored: str) -> None:
    assert sanitize_name(given) == stored


def test_sanitize_name_shortens_long_names_but_keeps_the_extension() -> None:
    name = sanitize_name("a" * 500 + ".jpeg")
    assert len(name) <= 120 and name.endswith(".jpeg")


def test_unique_names_number_duplicates_case_insensitively() -> None:
    names = UniqueNames()
    taken = [names.take(n) for n in ("a.png", "A.png", "a.png", "a_2.png", "b.png")]
    assert taken == ["a.png", "A_2.png", "a_3.png", "a_2_2.png", "b.png"]


def test_zip_download_name_is_a_utc_timestamp() -> None:
    assert zip_download_name(0) == "batch_results_19700101000000.zip"
    assert re.fullmatch(r"batch_results_\d{14}\.zip", zip_download_name(1.8e9))


def test_job_ids_are_checked_before_they_become_paths() -> None:
    assert is_valid_job_id("Zq3oX2u8m4Jk5NbdT6yqDA")
    assert not is_valid_job_id("../../../../etc")
    assert not is_valid_job_id("short")


def test_chunks_cover_every_item_once() -> None:
    assert chunked([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert chunked([1, 2], 0) == [[1], [2]]


def test_backoff_doubles_up_to_the_cap() -> None:
    settings = Settings(task_retry_backoff_s=1.0, task_retry_backoff_max_s=5.0)
    assert 0.5 <= backoff_seconds(settings, 0) <= 1.0
    assert 2.0 <= backoff_seconds(settings, 2) <= 4.0
    assert 2.5 <= backoff_seconds(settings, 10) <= 5.0


def test_celery_config_has_the_delivery_guarantees() -> None:
    config = celery_config(Settings(redis_url="redis://localhost:1/0", worker_queue="q"))
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["accept_content"] == ["json"] and config["task_serializer"] == "json"
    assert config["broker_transport_options"]["visibility_timeout"] > config["task_time_limit"]
    assert config["task_default_queue"] == "q.batch"
    # lanes are served in the order the worker lists them, not round robin
    assert config["broker_transport_options"]["queue_order_strategy"] == "priority"


def test_a_visibility_timeout_shorter_than_a_task_is_refused() -> None:
    with pytest.raises(ValueError, match="visibility"):
        celery_config(Settings(redis_url="redis://x/0", task_time_limit_s=600, broker_visibility_timeout_s=300))


def test_write_atomic_leaves_no_partial_file(tmp_path) -> None:
    target = tmp_path / "out" / "0.png"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["0.png"]
    # Readable as a plain open() would make it (mkstemp alone gives 0600): the process's umask decides.
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_job_client_imports_no_torch_and_no_tasks() -> None:
    code = (
        "import sys, matteflow.workers.client\n"
        "bad = [m for m in ('torch', 'onnxruntime', 'matteflow.workers.tasks') if m in sys.modules]\n"
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
