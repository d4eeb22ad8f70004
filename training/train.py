"""The training loop: composited samples -> MatteUNet, checkpoint every epoch, resume, logs, export.

Everything is driven by one config (training/config.json). Seeds are fixed; the learning rate is a pure
function of the step (linear warm-up, then cosine to zero), and each sample is seeded by (seed, epoch,
index), so a run resumed from ``last.pt`` continues exactly where the cut-off one stopped.

Files in ``run_dir``: ``last.pt`` (model, optimiser, epoch, history), ``log.jsonl`` (one line per epoch:
loss, lr, validation and holdout IoU, throughput), and after :func:`export` ``matteflow-unet.{onnx,
safetensors,json}``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from matteflow.core.unet import (
    ModelSidecar,
    build_unet,
    count_parameters,
    export_onnx,
    load_unet_safetensors,
    save_unet_safetensors,
    write_sidecar,
)
from matteflow.training.dataset import CompositeDataset, PackedSample, load_pack
from matteflow.training.evaluate import TorchPredictor, iou

log = logging.getLogger(__name__)

CHECKPOINT = "last.pt"
LOG_FILE = "log.jsonl"
EXPORT_STEM = "matteflow-unet"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int) -> float:
    """Linear warm-up over ``warmup_steps`` then cosine decay to 1 % of ``base_lr`` at ``total_steps``.

    The warm-up is a fixed number of steps (not a fraction of the run) so that a time-budgeted run, whose
    length is only known after its first epoch, warms up exactly like a run of fixed length.
    """
    warmup = max(1, warmup_steps)
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def _sobel(x: torch.Tensor) -> torch.Tensor:
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype)
    k = torch.stack([kx, kx.t()]).unsqueeze(1)
    return F.conv2d(x, k, padding=1)


def matting_loss(
    logits: torch.Tensor, coarse: torch.Tensor, target: torch.Tensor, weights: dict[str, float]
) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE + soft Dice on the mask, L1 + gradient L1 on the alpha, BCE on the stride-2 coarse head."""
    logits, coarse = logits.float(), coarse.float()
    alpha = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    inter = (alpha * target).sum(dim=(1, 2, 3))
    dice = 1 - ((2 * inter + 1) / (alpha.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)).mean()
    l1 = (alpha - target).abs().mean()
    grad = (_sobel(alpha) - _sobel(target)).abs().mean()
    small = F.interpolate(target, size=coarse.shape[-2:], mode="area")
    coarse_bce = F.binary_cross_entropy_with_logits(coarse, small)
    parts = {"bce": bce, "dice": dice, "l1": l1, "grad": grad, "coarse": coarse_bce}
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def score_split(model: torch.nn.Module, samples: list[PackedSample], input_size: int, device: torch.device) -> float:
    """Mean IoU on whole photos through the inference protocol (long side ``input_size``)."""
    if not samples:
        return float("nan")
    predictor = TorchPredictor(model, input_size, str(device))
    was_training = model.training
    scores = [iou(predictor(s.image), s.alpha.astype(np.float32) / 255.0) for s in samples]
    model.train(was_training)
    return float(np.mean(scores))


def to_unit_float(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 N x C x H x W from the loader -> float32 in [0, 1] on ``device`` (converted after the copy)."""
    x = batch.to(device, non_blocking=True).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def epochs_for_budget(budget_minutes: float, elapsed_s: float, epoch_s: float, done: int) -> int:
    """How many epochs in all fit in ``budget_minutes`` when ``done`` took ``elapsed_s`` and one takes ``epoch_s``.

    5 % of the remaining time is kept back for the export and the noise of a shared machine.
    """
    remaining = budget_minutes * 60 - elapsed_s
    return done + max(0, math.floor(0.95 * remaining / max(epoch_s, 1e-6)))


def fit(
    config: dict[str, Any],
    run_dir: Path,
    pack_dir: Path,
    device_name: str = "auto",
    max_minutes: float | None = None,
    workers: int | None = None,
    fresh: bool = False,
    time_budget: float | None = None,
    init_from: Path | None = None,
) -> Path:
    """Train (resuming from ``run_dir/last.pt`` unless ``fresh``); returns the checkpoint path.

    ``max_minutes`` stops after the epoch that crosses it (resume later to finish the same schedule).
    ``time_budget`` instead fits the whole schedule in that many minutes: after the second epoch the number of
    epochs is set from its measured length, so the learning rate still anneals to the end; that number is
    stored in the checkpoint and a resumed run keeps it. (The first epoch is no measure: on the H100 it took
    ~60 s against ~15 s for the next ones, for loader start-up and first-call kernel selection. By the end of
    epoch 2 the schedule is barely past its warm-up, so deciding then changes no learning rate noticeably.)
    ``init_from`` (exported safetensors of the same architecture) starts a new run from trained weights instead
    of random ones: fine-tuning with a fresh optimiser and schedule.
    """
    tcfg, mcfg = config["train"], config["model"]
    seed_everything(config["seed"])
    # OpenCV's own thread pool does not survive fork: with it running, forked loader workers can deadlock.
    import cv2

    cv2.setNumThreads(1)
    device = resolve_device(device_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    train, backgrounds = load_pack(pack_dir, ["train"])
    val, _ = load_pack(pack_dir, ["val"])
    holdout, _ = load_pack(pack_dir, ["holdout"])
    log.info(
        "pack: %d train, %d val, %d holdout photos, %d backgrounds",
        len(train),
        len(val),
        len(holdout),
        len(backgrounds),
    )
    dataset = CompositeDataset(
        train, backgrounds, tcfg["size"], config["augment"], tcfg["epoch_samples"], config["seed"]
    )

    model = build_unet(mcfg["arch"]).to(device)
    log.info("%s: %d parameters on %s", mcfg["arch"], count_parameters(model), device)
    use_cuda = device.type == "cuda"
    if use_cuda and tcfg.get("channels_last", True):
        model = model.to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tcfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tcfg["lr"],
    )
    steps_per_epoch = tcfg["epoch_samples"] // tcfg["batch_size"]
    warmup_steps = int(tcfg.get("warmup_steps", 300))
    total_epochs = int(tcfg["epochs"])

    epoch, step, history = 0, 0, []
    budgeted = time_budget is not None
    if budgeted:
        total_epochs = max(total_epochs, 2)  # run at least until the length is decided
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.is_file() and not fresh:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        epoch, step, history = ckpt["epoch"], ckpt["step"], ckpt["history"]
        if ckpt.get("budgeted"):
            total_epochs = int(ckpt["total_epochs"])  # fixed by the time-budgeted run that wrote it
            time_budget = None
        budgeted = bool(ckpt.get("budgeted"))
        log.info("resumed from %s at epoch %d/%d (step %d)", ckpt_path, epoch, total_epochs, step)
    elif init_from is not None:
        start = load_unet_safetensors(init_from, mcfg["arch"])
        model.load_state_dict(start.state_dict())
        log.info("initialised from %s", init_from)

    amp = use_cuda and tcfg.get("amp", True)
    channels_last = use_cuda and tcfg.get("channels_last", True)
    eval_every = max(1, int(tcfg.get("eval_every", 1)))
    n_workers = workers if workers is not None else (tcfg.get("workers") or max(0, min(15, _cpu_count() - 1)))
    while epoch < total_epochs:
        total_steps = steps_per_epoch * total_epochs
        t0 = time.monotonic()
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=tcfg["batch_size"],
            sampler=list(dataset.epoch_indices(epoch)),
            num_workers=n_workers,
            pin_memory=use_cuda,
            drop_last=True,
            prefetch_factor=4 if n_workers else None,
            persistent_workers=False,
            worker_init_fn=_quiet_worker,
        )
        model.train()
        sums: dict[str, float] = {}
        n_batches = 0
        for batch_images, batch_targets in loader:
            images = to_unit_float(batch_images, device, channels_last)
            targets = to_unit_float(batch_targets, device, False)
            lr = lr_at(step, total_steps, tcfg["lr"], warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                logits, coarse = model.forward_logits(images)
            loss, parts = matting_loss(logits, coarse, targets, config["loss"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            optimizer.step()
            step += 1
            n_batches += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
        epoch += 1
        train_seconds = time.monotonic() - t0
        model.eval()
        # Always score the first two epochs: a time-budgeted run needs what validation costs once warm.
        evaluate_now = epoch <= 2 or epoch % eval_every == 0 or epoch >= total_epochs
        t_eval = time.monotonic()
        val_iou = score_split(model, val, mcfg["input_size"], device) if evaluate_now else None
        holdout_iou = score_split(model, holdout, mcfg["input_size"], device) if evaluate_now else None
        if time_budget is not None and epoch == 2:
            per_epoch = train_seconds + (time.monotonic() - t_eval) / eval_every
            total_epochs = epochs_for_budget(time_budget, time.monotonic() - started, per_epoch, 2)
            total_steps = steps_per_epoch * total_epochs
            log.info("time budget %.1f min: %d epochs in all", time_budget, total_epochs)
        record = {
            "epoch": epoch,
            "epochs": total_epochs,
            "step": step,
            "lr": lr_at(step, total_steps, tcfg["lr"], warmup_steps),
            **{k: v / max(1, n_batches) for k, v in sums.items()},
            "val_iou": val_iou,
            "holdout_iou": holdout_iou,
            "samples_per_s": n_batches * tcfg["batch_size"] / max(train_seconds, 1e-6),
            "epoch_seconds": time.monotonic() - t0,
        }
        history.append(record)
        with (run_dir / LOG_FILE).open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        log.info(
            "epoch %d/%d loss %.4f val IoU %s holdout IoU %s (%.0f samples/s, %.0f s)",
            epoch,
            total_epochs,
            record["loss"],
            _fmt(record["val_iou"]),
            _fmt(record["holdout_iou"]),
            record["samples_per_s"],
            record["epoch_seconds"],
        )
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "total_epochs": total_epochs,
                "budgeted": budgeted,
                "step": step,
                "history": history,
                "config": config,
            },
            tmp,
        )
        tmp.replace(ckpt_path)  # atomic: a run killed mid-save keeps the previous checkpoint
        if max_minutes is not None and (time.monotonic() - started) / 60 > max_minutes and epoch < total_epochs:
            log.info("time budget of %.1f min reached after epoch %d; resume to continue", max_minutes, epoch)
            break
    return ckpt_path


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _quiet_worker(_worker_id: int) -> None:
    # One OpenCV thread per loader worker: the workers already use every core.
    import cv2

    cv2.setNumThreads(1)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def average_weights(paths: list[Path], arch: str) -> torch.nn.Module:
    """The uniform average of several exported weights of one architecture ("model soup").

    Runs fine-tuned from one another sit in the same basin of the loss, and their average generalises
    better than either (Wortsman et al., 2022); BatchNorm running statistics are averaged the same way.
    """
    if not paths:
        raise ValueError("nothing to average")
    states = [load_unet_safetensors(p, arch).state_dict() for p in paths]
    model = build_unet(arch)
    model.load_state_dict(
        {k: sum(st[k] for st in states) / len(states) if v.is_floating_point() else v for k, v in states[0].items()}
    )
    return model.eval()


def export(
    config: dict[str, Any],
    run_dir: Path,
    out_dir: Path,
    metrics: dict[str, Any] | None = None,
    version: str = "1",
    average: list[Path] | None = None,
) -> dict[str, Path]:
    """Write ``matteflow-unet.{onnx,safetensors,json}`` into ``out_dir``.

    The weights come from ``run_dir/last.pt``, or, when ``average`` names exported safetensors files, from
    their average (:func:`average_weights`).
    """
    mcfg = config["model"]
    if average:
        model = average_weights(average, mcfg["arch"])
        all_metrics: dict[str, Any] = {"averaged": [p.name for p in average]}
    else:
        ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)
        model = build_unet(mcfg["arch"])
        model.load_state_dict(ckpt["model"])
        model.eval()
        last = ckpt["history"][-1] if ckpt["history"] else {}
        all_metrics = {
            "epochs": ckpt["epoch"],
            "holdout_mean_iou_during_training": last.get("holdout_iou"),
            "val_mean_iou_vs_teacher_labels": last.get("val_iou"),
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "onnx": out_dir / f"{EXPORT_STEM}.onnx",
        "safetensors": out_dir / f"{EXPORT_STEM}.safetensors",
        "json": out_dir / f"{EXPORT_STEM}.json",
    }
    # safetensors first: if the ONNX exporter fails on some machine, the weights are already written.
    save_unet_safetensors(model, paths["safetensors"], half=True)
    flip_average = bool(mcfg.get("flip_average", False))
    export_onnx(model, paths["onnx"], size=mcfg["input_size"], flip_average=flip_average)
    sidecar = ModelSidecar(
        arch=mcfg["arch"],
        input_size=mcfg["input_size"],
        version=version,
        flip_average=flip_average,
        metrics={**all_metrics, **(metrics or {})},
    )
    write_sidecar(paths["json"], sidecar)
    log.info("exported %s", ", ".join(str(p) for p in paths.values()))
    return paths


def describe(config: dict[str, Any]) -> dict[str, Any]:
    """The config plus the architecture's full definition, for logs and the model card."""
    from matteflow.core.unet import ARCHITECTURES

    return {**config, "architecture": asdict(ARCHITECTURES[config["model"]["arch"]])}
