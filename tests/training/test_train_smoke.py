"""End-to-end smoke test of the training loop on a synthetic pack: fit, checkpoint, resume, export."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from matteflow.core.unet import load_unet_safetensors  # noqa: E402
from matteflow.training.train import (  # noqa: E402
    CHECKPOINT,
    LOG_FILE,
    epochs_for_budget,
    export,
    fit,
    lr_at,
)


def test_lr_schedule_warms_up_then_decays() -> None:
    lrs = [lr_at(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] < lrs[9] <= 1.0
    assert lrs[10] > lrs[50] > lrs[99] >= 0.01


def test_time_budget_sets_the_epoch_count() -> None:
    # 10 min budget, two epochs done after 60 s, 30 s per epoch: 0.95 * 540 / 30 = 17 more epochs.
    assert epochs_for_budget(10, 60, 30, 2) == 19
    assert epochs_for_budget(1, 90, 30, 2) == 2  # already over budget: stop where it is


def test_time_budgeted_fit_fixes_and_keeps_its_schedule(
    tmp_path: Path, synthetic_pack: Path, training_config: dict
) -> None:
    config = copy.deepcopy(training_config)
    config["train"]["epochs"] = 1000  # ignored: the budget decides
    run = tmp_path / "run"
    fit(config, run, synthetic_pack, device_name="cpu", workers=0, time_budget=0.05)
    ckpt = torch.load(run / CHECKPOINT, weights_only=False)
    assert 2 <= ckpt["total_epochs"] < 1000
    assert ckpt["epoch"] == ckpt["total_epochs"]  # the schedule ran to its end
    assert ckpt["history"][-1]["val_iou"] is not None  # the last epoch is always scored


def test_fit_resume_export(tmp_path: Path, synthetic_pack: Path, training_config: dict) -> None:
    config = copy.deepcopy(training_config)
    run = tmp_path / "run"
    # One epoch, then stop as if the machine went away ...
    config["train"]["epochs"] = 1
    fit(config, run, synthetic_pack, device_name="cpu", workers=0)
    first = torch.load(run / CHECKPOINT, weights_only=False)
    assert first["epoch"] == 1
    # ... then resume to the full two epochs: the loop continues from the checkpoint, not from scratch.
    config["train"]["epochs"] = 2
    fit(config, run, synthetic_pack, device_name="cpu", workers=0)
    second = torch.load(run / CHECKPOINT, weights_only=False)
    assert second["epoch"] == 2
    assert second["step"] == 2 * first["step"]
    lines = [json.loads(line) for line in (run / LOG_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for record in lines:
        assert np.isfinite(record["loss"])
        assert 0.0 <= record["holdout_iou"] <= 1.0

    paths = export(config, run, tmp_path / "export")
    sidecar = json.loads(paths["json"].read_text())
    assert sidecar["arch"] == "matteflow-unet-xs" and sidecar["input_size"] == 64
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    out = session.run(["alpha"], {"image": np.random.rand(2, 3, 64, 96).astype(np.float32)})[0]
    assert out.shape == (2, 1, 64, 96)
    assert paths["safetensors"].stat().st_size > 0


def test_dataset_is_deterministic_per_index(synthetic_pack: Path, training_config: dict) -> None:
    from matteflow.training.dataset import CompositeDataset, load_pack

    samples, backgrounds = load_pack(synthetic_pack, ["train"])
    ds = CompositeDataset(samples, backgrounds, 64, training_config["augment"], 8, seed=3)
    a_img, a_alpha = ds[5]
    b_img, b_alpha = ds[5]
    c_img, _ = ds[13]  # same position, next epoch: a different sample
    assert a_img.shape == (3, 64, 64) and a_alpha.shape == (1, 64, 64)
    assert a_img.dtype == np.uint8 and a_alpha.dtype == np.uint8  # scaled to [0, 1] on the device
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_alpha, b_alpha)
    assert not np.array_equal(a_img, c_img)


def test_fit_can_start_from_exported_weights(tmp_path: Path, synthetic_pack: Path, training_config: dict) -> None:
    config = copy.deepcopy(training_config)
    config["train"]["epochs"] = 1
    fit(config, tmp_path / "a", synthetic_pack, device_name="cpu", workers=0)
    weights = export(config, tmp_path / "a", tmp_path / "export")["safetensors"]
    # A new run from those weights with a learning rate too small to move them keeps them.
    config["train"]["lr"] = 1e-12
    fit(config, tmp_path / "b", synthetic_pack, device_name="cpu", workers=0, init_from=weights)
    start = load_unet_safetensors(weights, config["model"]["arch"]).state_dict()
    tuned = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)["model"]
    for name, tensor in start.items():
        if tensor.is_floating_point() and "running" not in name:
            torch.testing.assert_close(tuned[name], tensor, atol=2e-3, rtol=2e-3)


def test_export_of_an_average(tmp_path: Path, synthetic_pack: Path, training_config: dict) -> None:
    config = copy.deepcopy(training_config)
    config["train"]["epochs"] = 1
    exported = []
    for seed in (1, 2):
        config["seed"] = seed
        fit(config, tmp_path / f"run{seed}", synthetic_pack, device_name="cpu", workers=0)
        exported.append(export(config, tmp_path / f"run{seed}", tmp_path / f"export{seed}")["safetensors"])
    paths = export(config, tmp_path / "unused", tmp_path / "soup", version="7", average=exported)
    arch = config["model"]["arch"]
    a, b, soup = (load_unet_safetensors(p, arch).state_dict() for p in (*exported, paths["safetensors"]))
    name = next(k for k, v in a.items() if v.ndim == 4 and not torch.equal(v, b[k]))
    torch.testing.assert_close(soup[name], (a[name] + b[name]) / 2, atol=1e-3, rtol=1e-3)
    sidecar = json.loads(paths["json"].read_text())
    assert sidecar["version"] == "7" and sidecar["metrics"]["averaged"] == [p.name for p in exported]


@pytest.mark.parametrize("name", ["config.json", "config-cpu.json"])
def test_shipped_training_configs_are_consistent(name: str) -> None:
    from matteflow.core.unet import ARCHITECTURES, STRIDE
    from matteflow.training.cli import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "training" / name)
    assert config["model"]["arch"] in ARCHITECTURES
    assert config["model"]["input_size"] % STRIDE == 0 and config["train"]["size"] % STRIDE == 0
    assert config["train"]["epoch_samples"] >= config["train"]["batch_size"] > 0
    assert set(config["loss"]) == {"bce", "dice", "l1", "grad", "coarse"}


def test_the_gpu_recipe_exports_the_shipped_model_s_input_size() -> None:
    """An export from training/config.json must run at the size production runs (the sidecar's), or a
    retrained model would ship silently back at 320 px."""
    from matteflow.training.cli import load_config

    root = Path(__file__).resolve().parents[2]
    config = load_config(root / "training" / "config.json")
    shipped = json.loads((root / "models" / "matteflow-unet.json").read_text())
    assert (config["model"]["arch"], config["model"]["input_size"]) == (shipped["arch"], shipped["input_size"])


def test_matteflow_train_reports_progress(
    tmp_path: Path, synthetic_pack: Path, training_config: dict, capfd: pytest.CaptureFixture[str]
) -> None:
    from matteflow.cli import main

    config = copy.deepcopy(training_config)
    config["train"]["epochs"] = 1
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    args = ["train", "--config", str(config_path), "--stage", "fit", "--device", "cpu", "--workers", "0"]
    assert main([*args, "--pack-dir", str(synthetic_pack), "--run-dir", str(tmp_path / "run")]) == 0
    assert "epoch 1/1 loss" in capfd.readouterr().err  # a long run says how it goes, not only at the end
