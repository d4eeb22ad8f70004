"""Fixtures for the training tests: a tiny synthetic training pack and a shrunk config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_helpers import write_synthetic_pack

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def synthetic_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_pack(tmp_path_factory.mktemp("pack"))


@pytest.fixture(scope="session")
def training_config() -> dict:
    """The real config, shrunk to a few seconds of CPU work on the xs architecture."""
    config = json.loads((REPO / "training" / "config.json").read_text())
    config["model"] = {"arch": "matteflow-unet-xs", "input_size": 64}
    config["train"].update(size=64, batch_size=4, epochs=2, epoch_samples=8, workers=0)
    return config
