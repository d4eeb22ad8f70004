"""Worker concurrency and onnxruntime threads follow the container's CPU limit, not the node's cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from matteflow.settings import Settings, usable_cpus


def allowed() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "200000 100000\n"}, 2),  # cgroup v2, limit 2 CPUs
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: round up, half a core still runs a thread
        ({"cpu.max": "50000 100000\n"}, 1),  # below one CPU: still one
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # cgroup v1
    ],
)
def test_a_cpu_limit_caps_the_usable_cpus(tmp_path: Path, files: dict[str, str], expected: int) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert usable_cpus(tmp_path) == min(expected, allowed())


@pytest.mark.parametrize(
    "files",
    [
        {},  # no cgroup files (not in a container, or not Linux)
        {"cpu.max": "max 100000\n"},  # v2 without a limit
        {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},  # v1 without a limit
        {"cpu.max": "garbage\n"},
    ],
)
def test_without_a_limit_the_allowed_cores_count(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert usable_cpus(tmp_path) == allowed()


def test_default_worker_concurrency_is_the_usable_cpus() -> None:
    assert Settings().worker_concurrency == usable_cpus()
