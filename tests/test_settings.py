from __future__ import annotations

from pathlib import Path

import pytest

from matteflow.settings import Settings


def test_environment_is_read_once_with_types() -> None:
    settings = Settings.from_env({"MATTEFLOW_MAX_UPLOAD_MB": "5", "MATTEFLOW_RESULT_TTL_HOURS": "1.5"})
    assert settings.max_upload_mb == 5 and settings.max_upload_bytes == 5 * 1024 * 1024
    assert settings.result_ttl_hours == 1.5


def test_relative_storage_dir_becomes_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # `matteflow up` starts Redis inside its data folder: every process must agree on one absolute path.
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"MATTEFLOW_STORAGE_DIR": "var"})
    assert settings.storage_dir == tmp_path / "var"
    assert settings.replace(storage_dir=Path("other")).jobs_dir == tmp_path / "other" / "jobs"


def test_default_model_is_a_model_name_checked_at_start() -> None:
    assert Settings.from_env({}).default_model == "auto"
    assert Settings.from_env({"MATTEFLOW_DEFAULT_MODEL": " Ensemble"}).default_model == "ensemble"
    with pytest.raises(ValueError, match="MATTEFLOW_DEFAULT_MODEL: model must be one of auto, people"):
        Settings.from_env({"MATTEFLOW_DEFAULT_MODEL": "resnet"})


def test_the_encoder_pool_is_threads_unless_processes_are_asked_for() -> None:
    assert Settings.from_env({}).encode_pool == "threads"
    assert Settings.from_env({"MATTEFLOW_ENCODE_POOL": "processes"}).encode_pool == "processes"
    with pytest.raises(ValueError, match="MATTEFLOW_ENCODE_POOL must be threads or processes, got 'fibres'"):
        Settings.from_env({"MATTEFLOW_ENCODE_POOL": "fibres"})


def test_bad_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="MATTEFLOW_WEB_PORT"):
        Settings.from_env({"MATTEFLOW_WEB_PORT": "eighty"})


def test_task_chunk_size_is_the_gpu_batch_on_cuda_unless_set() -> None:
    assert Settings.from_env({}).task_chunk_size == 1
    assert Settings.from_env({"MATTEFLOW_DEVICE": "cuda", "MATTEFLOW_GPU_BATCH_SIZE": "12"}).task_chunk_size == 12
    assert Settings.from_env({"MATTEFLOW_DEVICE": "cuda:1"}).task_chunk_size == Settings().gpu_batch_size
    assert Settings.from_env({"MATTEFLOW_DEVICE": "cuda", "MATTEFLOW_TASK_CHUNK_SIZE": "3"}).task_chunk_size == 3
    assert Settings.from_env({"MATTEFLOW_DEVICE": "auto"}).task_chunk_size == 1  # the web side cannot tell
