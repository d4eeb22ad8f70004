"""The layering rules of docs/internal-api.md, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return {name.split(".")[0] for name in result.stdout.split()} | set(result.stdout.split())


def test_core_imports_no_web_or_queue_code() -> None:
    modules = imported_after(
        "import matteflow.core.engine, matteflow.core.model, matteflow.core.imageio, "
        "matteflow.core.postprocess, matteflow.core.options"
    )
    assert not modules & {"flask", "celery", "kombu", "redis", "prometheus_client", "werkzeug"}
    assert "torch" not in modules  # only the torch backend imports torch, on demand


def test_the_encoder_pool_needs_no_torch() -> None:
    modules = imported_after("import matteflow.core.encode_pool")
    assert "torch" not in modules and "onnxruntime" not in modules


def test_the_device_pipeline_imports_torch_and_no_web_or_queue_code() -> None:
    # The torch post-processing is one of the "model/inference modules" allowed to import torch; it is loaded
    # only by a GPU worker (or MATTEFLOW_POSTPROCESS=torch), so the CPU runtime stays torch-free.
    pytest.importorskip("torch")
    modules = imported_after("import matteflow.core.device_postprocess, matteflow.core.device_engine")
    assert "torch" in modules
    assert not modules & {"flask", "celery", "kombu", "redis", "prometheus_client", "werkzeug"}


def test_matte_cli_module_does_not_load_the_service_stack() -> None:
    modules = imported_after("import matteflow.cli, matteflow")
    assert not modules & {"flask", "celery", "torch", "onnxruntime"}


@pytest.mark.parametrize("module", ["matteflow.web", "matteflow.workers.client"])
def test_web_side_never_imports_torch(module: str) -> None:
    pytest.importorskip(module)
    modules = imported_after(f"import {module}")
    assert "torch" not in modules and "onnxruntime" not in modules
    assert "matteflow.workers.tasks" not in modules
