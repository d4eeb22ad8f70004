"""Helpers for the pipeline's integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from matteflow.core.options import parse_options
from matteflow.files import write_atomic
from matteflow.workers.client import JobClient
from matteflow.workers.jobstore import NewItem
from matteflow.workers.storage import JobFiles


def record_job(client: JobClient, names: list[str], make_jpeg: Callable) -> tuple[str, JobFiles]:
    """A job recorded and stored, its items released but never enqueued (as if their messages were lost):
    tests drive its items themselves, and the reconciler re-sends them only once the job is stale."""
    job_id = f"test-{time.time_ns()}"
    files = JobFiles(client.settings.jobs_dir, job_id)
    files.out_dir.mkdir(parents=True)  # as the intake does: workers never create a job's folders
    items = []
    for index, name in enumerate(names):
        write_atomic(files.input_path(index, f"{index}_{name}"), make_jpeg(seed=index))
        items.append(NewItem(name, f"{index}_{name}"))
    client.store.create(job_id, items, parse_options().to_dict())
    client.store.release(job_id)
    return job_id, files


def wait_for_job(
    client: JobClient, job_id: str, timeout: float, states: tuple[str, ...] = ("done", "failed")
) -> dict[str, Any]:
    """Poll the job until its state is in ``states``; fail the test with the last state after ``timeout``."""
    deadline = time.monotonic() + timeout
    job = client.get_job(job_id)
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if job is not None and job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not in {states} after {timeout:g}s: {_brief(job)}")


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``condition()`` until true; fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def _brief(job: dict[str, Any] | None) -> str:
    if job is None:
        return "unknown job"
    states = [item["state"] for item in job["items"]]
    return f"state={job['state']} done={job['done']} failed={job['failed']} items={states}"
