"""Score the whole pipeline (what ``matteflow matte`` writes) against ground truth, and say which model ran.

Unlike ``matteflow eval`` (the raw network, upsampled), this runs :class:`~matteflow.core.engine.MatteEngine`
with the given options (preset, model: people / general / auto), decodes the written PNG's alpha and scores
it: IoU of ``alpha >= 0.5`` vs ``truth >= 0.5``, and SAD (sum of |alpha - truth| / 1000) where the truth is
soft. It also counts the model each photo went through and the confidence of each result.

    python -m matteflow.training.eval_pipeline --images DIR --truth DIR [--model auto] [--preset ecommerce]
        [--refine] [--set NAME=VALUE ...] [--people-spec default] [--general-spec general] [--json out.json]

``--rembg-style`` scores the general network as rembg uses it instead (square input, the raw output resized
to the photo, no guided filter or post-processing), the baseline the general model is compared with.
``--outputs DIR`` scores the PNGs another tool wrote there (``<stem>.png``, alpha channel), e.g. the rembg CLI
with its alpha matting (``rembg p -m u2netp -a IMAGES DIR``).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from matteflow.core.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def read_truth(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The ground truth as H x W float32 in [0, 1], resized (nearest) to ``size`` = (width, height)."""
    truth = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if truth is None:
        raise ValueError(f"cannot read ground truth {path}")
    if (truth.shape[1], truth.shape[0]) != size:
        truth = cv2.resize(truth, size, interpolation=cv2.INTER_NEAREST)
    return truth.astype(np.float32) / 255.0


def score(alpha: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU at 0.5 and SAD (/1000) of two H x W float32 mattes in [0, 1]."""
    a, t = alpha >= 0.5, truth >= 0.5
    union = np.count_nonzero(a | t)
    iou = np.count_nonzero(a & t) / union if union else 1.0
    return {"iou": float(iou), "sad": float(np.abs(alpha - truth).sum() / 1000.0)}


def find_pairs(images: Path, truth: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        match = next((truth / (image.stem + s) for s in (".png", ".jpg") if (truth / (image.stem + s)).is_file()), None)
        if match is not None:
            pairs.append((image, match))
    if not pairs:
        raise FileNotFoundError(f"no photo in {images} has a ground truth of the same stem in {truth}")
    return pairs


def rembg_style_alpha(model: Any, rgb: np.ndarray) -> np.ndarray:
    """rembg's use of a square-input network: squeeze to the square, predict, resize the raw output back."""
    from matteflow.core.engine import make_network_input

    tensor, _ = make_network_input(rgb, model.input_size, "square")
    alpha = model.predict(tensor[None])[0]
    return np.clip(cv2.resize(alpha, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR), 0, 1)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from matteflow.core.engine import MatteEngine
    from matteflow.core.options import parse_options
    from matteflow.core.registry import GENERAL, ModelSet

    models = ModelSet.from_specs(args.people_spec, args.general_spec, device="cpu", threads=args.threads)
    engine = MatteEngine(models, max_pixels=100_000_000)
    values = {"model": args.model, "format": "png", "background": "transparent"}
    if args.preset:
        values = {"preset": args.preset, **({"model": args.model} if args.model_given else {})}
    if args.refine:
        values["refine"] = True
    for setting in args.set:  # after --refine, so --set refine=false can switch a preset's refinement off
        name, _, value = setting.partition("=")
        values[name.strip()] = value.strip()
    options = parse_options(values)
    rows = []
    for image_path, truth_path in find_pairs(Path(args.images), Path(args.truth)):
        data = image_path.read_bytes()
        if args.outputs:
            written = Image.open(Path(args.outputs) / f"{image_path.stem}.png")
            alpha = np.asarray(written.convert("RGBA").getchannel("A"), np.float32) / 255.0
            model, confidence = "outside", float("nan")
        elif args.rembg_style:
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            alpha, model, confidence = rembg_style_alpha(models.get(GENERAL), rgb), GENERAL, float("nan")
        else:
            result = engine.process_bytes(data, options)
            written = Image.open(io.BytesIO(result.image))
            alpha = np.asarray(written.getchannel("A"), np.float32) / 255.0
            model, confidence = result.model, result.confidence
        metrics = score(alpha, read_truth(truth_path, (alpha.shape[1], alpha.shape[0])))
        rows.append({"name": image_path.name, "model": model, "confidence": confidence, **metrics})
    summary = {
        "images": len(rows),
        "options": options.to_dict(),
        "mean_iou": statistics.fmean(r["iou"] for r in rows),
        "median_iou": statistics.median(r["iou"] for r in rows),
        "mean_sad": statistics.fmean(r["sad"] for r in rows),
        "models": dict(Counter(r["model"] for r in rows)),
    }
    return {"summary": summary, "images": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eval_pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--truth", required=True, help="alpha mattes or masks named like the photos")
    parser.add_argument("--model", help="auto (default), people or general")
    parser.add_argument("--preset", help="a preset (its model applies unless --model is given)")
    parser.add_argument("--people-spec", default="default", help="load_model spec behind 'people'")
    parser.add_argument("--general-spec", default="general", help="load_model spec behind 'general'")
    parser.add_argument("--rembg-style", action="store_true", help="score the general network as rembg runs it")
    parser.add_argument("--refine", action="store_true", help="with edge refinement (closed-form matting)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="any other option, e.g. erode=0 (repeatable)"
    )
    parser.add_argument("--outputs", help="score the <stem>.png files another tool wrote here instead")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", help="also write the per-image numbers here")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per image")
    args = parser.parse_args(argv)
    args.model_given = args.model is not None
    args.model = args.model or "auto"
    try:
        report = evaluate(args)
    except (FileNotFoundError, ValueError, InputError) as exc:
        print(f"eval_pipeline: {exc}", file=sys.stderr)
        return 1
    if args.verbose:
        for row in report["images"]:
            name, model, conf = row["name"], row["model"], row["confidence"]
            print(f"{name:>14} {model:>8} conf {conf:.3f} iou {row['iou']:.3f} sad {row['sad']:.1f}")
    s = report["summary"]
    print(
        f"{s['images']} images: mean IoU {s['mean_iou']:.4f} (median {s['median_iou']:.4f}), "
        f"mean SAD {s['mean_sad']:.2f}, models {s['models']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
