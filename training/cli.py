"""``matteflow train`` and ``matteflow eval``.

``matteflow train --config training/config.json [--stage STAGE]`` runs the stages in order
(``pack`` -> ``teachers`` -> ``labels`` -> ``fit`` -> ``export``; ``all`` = every one). ``--stage
export-general`` rebuilds the shipped general model from the u2netp teacher (training/export_general.py),
``--stage quantize-general`` its int8 version for the CPU (training/quantize_general.py). Each stage is
resumable: teacher maps and labels already on disk are kept, and ``fit`` resumes from ``run_dir/last.pt``.

``matteflow eval --images DIR --masks DIR [--model SPEC] [--teachers DIR]`` prints mean/median IoU (and
SAD/MSE/gradient error where the truth is soft) for the model and, with ``--teachers``, the two teachers and
their ensemble side by side. ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from matteflow.settings import Settings

log = logging.getLogger(__name__)

STAGES = ("pack", "teachers", "labels", "fit", "export")
GENERAL_STAGES = ("export-general", "quantize-general")


def load_config(path: str | Path) -> dict[str, Any]:
    """The training config (JSON); FileNotFoundError / ValueError with the path on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    missing = [k for k in ("seed", "model", "train", "augment", "loss", "pack", "labels") if k not in config]
    if missing:
        raise ValueError(f"{path}: missing sections {missing}")
    return config


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matteflow train", description="Build labels and train the MatteFlow U-Net.")
    p.add_argument("--config", default="training/config.json", help="training config (JSON)")
    p.add_argument(
        "--stage",
        action="append",
        choices=[*STAGES, "all", *GENERAL_STAGES],
        help="stage(s) to run, repeatable (default: all); export-general and quantize-general (not part of "
        "all) rebuild the shipped general model from the u2netp teacher, and its int8 version from that, "
        "into --export-dir (default models)",
    )
    p.add_argument("--pack-dir", help="override config pack_dir (the packed training set)")
    p.add_argument("--run-dir", help="override config run_dir (checkpoints and logs)")
    p.add_argument("--export-dir", help="where export writes the model files (default: RUN_DIR/export)")
    p.add_argument(
        "--average",
        action="append",
        metavar="SAFETENSORS",
        help="export stage: export the average of these exported weights instead of RUN_DIR/last.pt (repeat)",
    )
    p.add_argument("--version", default="1", help="model version written to the sidecar")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: MATTEFLOW_DEVICE)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--workers", type=int, help="DataLoader workers (default: CPUs - 1)")
    p.add_argument("--max-minutes", type=float, help="stop cleanly after the epoch that passes this budget")
    p.add_argument(
        "--time-budget",
        type=float,
        help="fit the whole schedule in this many minutes: the epoch count is set after the second epoch",
    )
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--init-from", help="start a new run from these safetensors weights (fine-tuning)")
    p.add_argument("--seed", type=int, help="override the config's seed (a fine-tune sees new samples)")
    p.add_argument("--lr", type=float, help="override train.lr")
    p.add_argument("--size", type=int, help="override train.size (the square crop the network trains on)")
    p.add_argument("--teachers-dir", help="override config teachers_dir (the teacher model files)")
    p.add_argument("--teacher-threads", type=int, default=1, help="onnxruntime threads per teacher")
    return p


def train_main(argv: list[str]) -> int:
    """Entry point of ``matteflow train``."""
    args = _train_parser().parse_args(argv)
    settings = Settings.from_env()
    # force: the top-level `matteflow` entry point has already configured logging at WARNING.
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    try:
        config = load_config(args.config)
    except (FileNotFoundError, ValueError) as exc:
        print(f"matteflow train: {exc}", file=sys.stderr)
        return 2
    if args.pack_dir:
        config["pack_dir"] = args.pack_dir
    if args.run_dir:
        config["run_dir"] = args.run_dir
    if args.epochs:
        config["train"]["epochs"] = args.epochs
    if args.seed is not None:
        config["seed"] = args.seed
    if args.lr is not None:
        config["train"]["lr"] = args.lr
    if args.size:
        config["train"]["size"] = args.size
    if args.stage and set(args.stage) & set(GENERAL_STAGES):
        if _build_general(args, config):
            return 1
        if set(args.stage) <= set(GENERAL_STAGES):
            return 0
    stages = STAGES if not args.stage or "all" in args.stage else tuple(s for s in STAGES if s in args.stage)
    pack_dir, run_dir = Path(config["pack_dir"]), Path(config["run_dir"])
    try:
        if "pack" in stages:
            from matteflow.training.dataset import build_pack

            build_pack(config)
        if "teachers" in stages:
            from matteflow.training.dataset import teacher_inputs
            from matteflow.training.labels import cache_teacher_predictions

            names = tuple(config["pack"]["teacher_weights"])
            cache_teacher_predictions(
                teacher_inputs(pack_dir),
                args.teachers_dir or config["teachers_dir"],
                pack_dir / "teachers",
                names=names,
                threads=args.teacher_threads,
            )
        if "labels" in stages:
            from matteflow.training.dataset import prepare_soft_labels

            prepare_soft_labels(pack_dir, config)
        if "fit" in stages:
            from matteflow.training.train import fit

            fit(
                config,
                run_dir,
                pack_dir,
                device_name=args.device or settings.device,
                max_minutes=args.max_minutes,
                workers=args.workers,
                fresh=args.fresh,
                time_budget=args.time_budget,
                init_from=Path(args.init_from) if args.init_from else None,
            )
        if "export" in stages:
            from matteflow.training.train import export

            export(
                config,
                run_dir,
                Path(args.export_dir) if args.export_dir else run_dir / "export",
                version=args.version,
                average=[Path(p) for p in args.average] if args.average else None,
            )
    except (FileNotFoundError, ValueError) as exc:
        print(f"matteflow train: {exc}", file=sys.stderr)
        return 1
    return 0


def _build_general(args: argparse.Namespace, config: dict[str, Any]) -> int:
    """``export-general`` then ``quantize-general``, as asked; 1 after printing the error, else 0."""
    from matteflow.training.export_general import MODEL_STEM, export_general

    export_dir = Path(args.export_dir or "models")
    try:
        if "export-general" in args.stage:
            print(export_general(Path(args.teachers_dir or config["teachers_dir"]), export_dir))
        if "quantize-general" in args.stage:
            from matteflow.training.quantize_general import quantize_general

            print(quantize_general(export_dir / f"{MODEL_STEM}.onnx", Path(config["data_dir"]), export_dir))
    except (FileNotFoundError, ValueError) as exc:
        print(f"matteflow train: {exc}", file=sys.stderr)
        return 1
    return 0


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matteflow eval", description="Score a model (and the teachers) on masks.")
    p.add_argument("--images", required=True, help="folder of photos")
    p.add_argument("--masks", required=True, help="folder of masks named like the photos (.png)")
    p.add_argument("--model", help="default | onnx:<path> | torch:<path> (default: MATTEFLOW_MODEL)")
    p.add_argument("--teachers", help="folder with u2netp.onnx and selfie_segmentation.tflite: score them too")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    p.add_argument("--input-size", type=int, help="long side the network runs at (default: the model's sidecar)")
    p.add_argument(
        "--linear-upsample",
        action="store_true",
        help="resize the matte to the photo bilinearly instead of the engine's guided filter (faster, rougher)",
    )
    p.add_argument("--json", help="also write the summary and per-image IoU here")
    return p


def eval_main(argv: list[str]) -> int:
    """Entry point of ``matteflow eval``."""
    args = _eval_parser().parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s", force=True)
    from matteflow.training.evaluate import (
        evaluate_pairs,
        find_pairs,
        format_table,
        load_pairs,
        load_predictor,
        teacher_predictors,
    )

    spec = args.model or settings.model
    try:
        pairs = find_pairs(args.images, args.masks)
        predictor = load_predictor(spec, args.threads, args.input_size, guided=not args.linear_upsample)
        predictors = {spec if args.input_size is None else f"{spec}@{args.input_size}": predictor}
        if args.teachers:
            predictors.update(teacher_predictors(args.teachers, threads=args.threads))
        summary, per_image = evaluate_pairs(predictors, load_pairs(pairs))
    except (FileNotFoundError, ValueError) as exc:
        print(f"matteflow eval: {exc}", file=sys.stderr)
        return 1
    print(format_table(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "per_image_iou": per_image}, indent=1))
    return 0
