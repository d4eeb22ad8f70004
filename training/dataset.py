"""The packed training set and its augmented, composited samples.

A *pack* is a compact, self-contained folder (``.carry/trainset/`` by default, git-ignored) that travels to a
GPU machine on its own::

    index.json                 splits, label sources, background names
    people/<key>.jpg           photo, long side <= pack.max_side
    people/<key>.label.png     COCO mask (0/255), or the teacher-ensemble probability (``labels`` stage)
    people/<key>.alpha.png     soft alpha label of teacher-labelled photos (``labels`` stage)
    teachers/<key>.<name>.png  each teacher's probability map (``pack`` copies cached ones, ``teachers`` adds)
    backgrounds/<n>.jpg        photos without people, for composites

Splits: ``holdout`` (half of the COCO photos: real masks, never trained on, the honest score), ``val`` (a few
teacher-labelled photos, to watch distillation), ``train`` (the rest).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import random
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from matteflow.training.labels import (
    list_backgrounds,
    list_people,
    load_teacher_probabilities,
    read_gray,
    read_rgb,
    soft_alpha_from_probability,
    teacher_cache_path,
)
from matteflow.training.teachers import ensemble_probability

log = logging.getLogger(__name__)

INDEX = "index.json"


def _fit_long_side(img: np.ndarray, max_side: int, interp: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return img
    return cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=interp)


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])


def assign_splits(
    keys_with_mask: Sequence[str],
    keys_without: Sequence[str],
    holdout_fraction: float,
    val_fraction: float,
    seed: int,
) -> dict[str, str]:
    """Deterministic split by seed: a fraction of masked photos -> holdout, of the rest -> val."""
    rng = random.Random(seed)
    masked = sorted(keys_with_mask)
    rng.shuffle(masked)
    n_hold = round(len(masked) * holdout_fraction)
    splits = {k: ("holdout" if i < n_hold else "train") for i, k in enumerate(masked)}
    rest = sorted(keys_without)
    rng.shuffle(rest)
    n_val = round(len(rest) * val_fraction)
    splits.update({k: ("val" if i < n_val else "train") for i, k in enumerate(rest)})
    return splits


def build_pack(config: dict[str, Any]) -> Path:
    """Write the pack from the raw data (see module docstring); returns its folder.

    Teacher maps already cached for the original photos (``teacher_cache_dir``) are copied in at the pack's
    size; the ``teachers`` stage computes the missing ones from the packed photos.
    """
    pcfg = config["pack"]
    pack = Path(config["pack_dir"])
    for sub in ("people", "backgrounds", "teachers"):
        (pack / sub).mkdir(parents=True, exist_ok=True)
    items = list_people(config["data_dir"])
    cache = Path(config["teacher_cache_dir"])
    # The committed regression-test photos (tests/data) are always held out, then a seeded share of the rest.
    forced = set(pcfg.get("force_holdout", []))
    splits = assign_splits(
        [i.key for i in items if i.mask is not None and i.set_name == pcfg["coco_set"] and i.key not in forced],
        [i.key for i in items if i.mask is None],
        pcfg["coco_holdout_fraction"],
        pcfg["val_fraction"],
        config["seed"],
    )
    splits.update({k: "holdout" for k in forced})
    entries = []
    for item in items:
        rgb = _fit_long_side(read_rgb(item.image), pcfg["max_side"], cv2.INTER_AREA)
        size = (rgb.shape[1], rgb.shape[0])
        _write_jpeg(pack / "people" / f"{item.key}.jpg", rgb, pcfg["jpeg_quality"])
        if item.mask is not None:
            label = cv2.resize(read_gray(item.mask), size, interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(pack / "people" / f"{item.key}.label.png"), label)
        else:
            for name in pcfg["teacher_weights"]:
                cached = teacher_cache_path(cache, item.key, name)
                if cached.is_file():
                    prob = cv2.resize(read_gray(cached), size, interpolation=cv2.INTER_LINEAR)
                    cv2.imwrite(str(teacher_cache_path(pack / "teachers", item.key, name)), prob)
        source = "mask" if item.mask is not None else "teachers"
        entries.append({"key": item.key, "set": item.set_name, "split": splits[item.key], "label": source})
    backgrounds = []
    for n, path in enumerate(list_backgrounds(config["data_dir"])):
        name = f"bg{n:04d}_{path.parent.parent.name}.jpg"
        rgb = _fit_long_side(read_rgb(path), pcfg["max_side"], cv2.INTER_AREA)
        _write_jpeg(pack / "backgrounds" / name, rgb, pcfg["jpeg_quality"])
        backgrounds.append(name)
    (pack / INDEX).write_text(json.dumps({"people": entries, "backgrounds": backgrounds}, indent=1))
    log.info("pack: %d people, %d backgrounds in %s", len(entries), len(backgrounds), pack)
    return pack


def teacher_inputs(pack: str | Path) -> list[tuple[str, Path]]:
    """(key, packed photo) of every teacher-labelled photo in the pack: the ``teachers`` stage's work list."""
    pack = Path(pack)
    return [
        (e["key"], pack / "people" / f"{e['key']}.jpg") for e in read_index(pack)["people"] if e["label"] == "teachers"
    ]


def read_index(pack: str | Path) -> dict[str, Any]:
    path = Path(pack) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"no training pack at {pack} (build it with `matteflow train --stage pack`)")
    return json.loads(path.read_text())


def _soft_label_one(args: tuple[str, str, tuple[str, ...], tuple[float, ...], float, int]) -> str:
    pack, key, names, weights, band_frac, max_side = args
    base = Path(pack) / "people"
    out = base / f"{key}.alpha.png"
    if out.is_file():
        return key
    rgb = read_rgb(base / f"{key}.jpg")
    prob = ensemble_probability(load_teacher_probabilities(Path(pack) / "teachers", key, names), list(weights))
    # The raw ensemble is kept too: evaluation and debugging compare against it.
    cv2.imwrite(str(base / f"{key}.label.png"), np.round(prob * 255).astype(np.uint8))
    alpha = soft_alpha_from_probability(rgb, prob, band_frac=band_frac, max_side=max_side) if max_side else prob
    tmp = out.with_suffix(".tmp.png")
    cv2.imwrite(str(tmp), np.round(alpha * 255).astype(np.uint8))
    tmp.replace(out)
    return key


def prepare_soft_labels(pack: str | Path, config: dict[str, Any]) -> int:
    """Teacher-ensemble labels, sharpened by closed-form matting (resumable, parallel).

    COCO masks stay as they are (binary ground truth). Raises FileNotFoundError naming a photo whose
    teacher maps are missing (run the ``teachers`` stage first). Returns the number of labels made.
    """
    lcfg, weights = config["labels"], config["pack"]["teacher_weights"]
    names = tuple(weights)
    todo = [key for key, _ in teacher_inputs(pack)]
    for key in todo:
        for name in names:
            if not teacher_cache_path(Path(pack) / "teachers", key, name).is_file():
                raise FileNotFoundError(f"teacher map {name} of {key} missing in {pack}/teachers: run --stage teachers")
    workers = lcfg.get("workers") or max(1, (os.cpu_count() or 2) - 1)
    max_side = int(lcfg["max_side"]) if lcfg.get("soft_alpha", True) else 0
    jobs = [
        (str(pack), key, names, tuple(weights[n] for n in names), float(lcfg["band_frac"]), max_side) for key in todo
    ]
    done = 0
    # spawn, not fork: the parent may already run OpenCV threads, which forked children can deadlock on.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in pool.map(_soft_label_one, jobs, chunksize=4):
            done += 1
            if done % 100 == 0:
                log.info("labels: %d/%d", done, len(jobs))
    return done


@dataclass
class PackedSample:
    key: str
    set_name: str
    split: str
    source: str
    image: np.ndarray  # H x W x 3 uint8 RGB
    alpha: np.ndarray  # H x W uint8 (soft label when present, else the raw label)


def load_pack(pack: str | Path, splits: Sequence[str]) -> tuple[list[PackedSample], list[np.ndarray]]:
    """Decode the pack's photos of ``splits`` (and all backgrounds) into memory once."""
    pack = Path(pack)
    index = read_index(pack)
    samples = []
    for e in index["people"]:
        if e["split"] not in splits:
            continue
        base = pack / "people" / e["key"]
        soft = base.with_name(base.name + ".alpha.png")
        label = soft if soft.is_file() else base.with_name(base.name + ".label.png")
        samples.append(
            PackedSample(e["key"], e["set"], e["split"], e["label"], read_rgb(f"{base}.jpg"), read_gray(label))
        )
    backgrounds = [read_rgb(pack / "backgrounds" / n) for n in index["backgrounds"]]
    return samples, backgrounds


def sampling_weights(samples: Sequence[PackedSample]) -> np.ndarray:
    """Per-photo weights ~ 1/sqrt(set size): the big portrait set does not drown the varied small ones."""
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.set_name] = counts.get(s.set_name, 0) + 1
    w = np.array([1.0 / math.sqrt(counts[s.set_name]) for s in samples])
    return w / w.sum()


class Augmenter:
    """Makes one square training sample (image, alpha) from a photo, its label and the backgrounds."""

    def __init__(self, size: int, cfg: dict[str, Any]) -> None:
        self.size = size
        self.cfg = cfg

    def composite(
        self, rng: np.random.Generator, img: np.ndarray, alpha: np.ndarray, bg: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cut the person out with its alpha, shrink/move it, and lay it over a background photo."""
        h, w = alpha.shape
        s = rng.uniform(*self.cfg["person_scale"])
        fw, fh = max(8, round(w * s)), max(8, round(h * s))
        fg = cv2.resize(img, (fw, fh), interpolation=cv2.INTER_AREA).astype(np.float32)
        fa = cv2.resize(alpha, (fw, fh), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        # Independent colour shift of the person: teaches edges, not "same lighting as the background".
        fg = fg * rng.uniform(0.8, 1.2) + rng.uniform(-15, 15, 3).astype(np.float32)
        canvas = self._background(rng, bg, h, w)
        x0 = int(rng.integers(0, w - fw + 1))
        # People usually stand on the bottom edge; sometimes they float anywhere.
        y0 = h - fh if rng.random() < 0.5 else int(rng.integers(0, h - fh + 1))
        out_a = np.zeros((h, w), np.uint8)
        out_a[y0 : y0 + fh, x0 : x0 + fw] = np.round(fa * 255).astype(np.uint8)
        # Only the person's box is blended in float; the rest of the canvas stays uint8.
        region = canvas[y0 : y0 + fh, x0 : x0 + fw].astype(np.float32)
        a3 = fa[..., None]
        canvas[y0 : y0 + fh, x0 : x0 + fw] = np.clip(a3 * fg + (1 - a3) * region, 0, 255).astype(np.uint8)
        return canvas, out_a

    @staticmethod
    def _background(rng: np.random.Generator, bg: np.ndarray, h: int, w: int) -> np.ndarray:
        """A random h x w window of ``bg`` zoomed by 1-1.5x (only the window is resized), sometimes mirrored."""
        bh, bw = bg.shape[:2]
        scale = max(h / bh, w / bw) * rng.uniform(1.0, 1.5)
        src_h, src_w = min(bh, math.ceil(h / scale)), min(bw, math.ceil(w / scale))
        y = int(rng.integers(0, bh - src_h + 1))
        x = int(rng.integers(0, bw - src_w + 1))
        out = cv2.resize(bg[y : y + src_h, x : x + src_w], (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            out = cv2.flip(out, 1)
        return out

    def geometry(self, rng: np.random.Generator, img: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fit the whole picture (as at inference) or zoom into a crop; output S x S."""
        S = self.size
        h, w = alpha.shape
        aspect = math.exp(rng.uniform(-1, 1) * self.cfg["aspect_jitter"])
        if rng.random() < self.cfg["p_fit_whole"]:
            scale = S / max(h * aspect, w / aspect) * rng.uniform(0.85, 1.0)
        else:
            scale = S / min(h * aspect, w / aspect) * rng.uniform(*self.cfg["zoom"]) * 0.8
        nh, nw = max(8, round(h * aspect * scale)), max(8, round(w / aspect * scale))
        interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
        img = cv2.resize(img, (nw, nh), interpolation=interp)
        alpha = cv2.resize(alpha, (nw, nh), interpolation=interp)
        if rng.random() < self.cfg["p_rotate"]:
            angle = rng.uniform(-1, 1) * self.cfg["rotate_deg"]
            m = cv2.getRotationMatrix2D((nw / 2, nh / 2), angle, 1.0)
            img = cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            alpha = cv2.warpAffine(alpha, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        # Pad (random flat colour, label 0) or crop to S x S.
        fill = rng.integers(0, 256, 3).tolist()
        out_img = np.empty((S, S, 3), np.uint8)
        out_img[:] = np.array(fill, np.uint8)
        out_a = np.zeros((S, S), np.uint8)
        ys, xs = (int(rng.integers(0, abs(nh - S) + 1)), int(rng.integers(0, abs(nw - S) + 1)))
        src_y, dst_y = (ys, 0) if nh >= S else (0, ys)
        src_x, dst_x = (xs, 0) if nw >= S else (0, xs)
        ch, cw = min(S, nh), min(S, nw)
        out_img[dst_y : dst_y + ch, dst_x : dst_x + cw] = img[src_y : src_y + ch, src_x : src_x + cw]
        out_a[dst_y : dst_y + ch, dst_x : dst_x + cw] = alpha[src_y : src_y + ch, src_x : src_x + cw]
        if rng.random() < self.cfg["p_flip"]:
            out_img, out_a = out_img[:, ::-1], out_a[:, ::-1]
        return np.ascontiguousarray(out_img), np.ascontiguousarray(out_a)

    def photometric(self, rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
        """Colour, blur, noise and JPEG artefacts: the label does not change.

        Gamma, contrast and brightness are folded into one 256-entry lookup table (cv2.LUT): the same result
        as computing them per pixel in float, at a fraction of the cost (augmentation bounds training speed).
        """
        cfg = self.cfg
        if rng.random() < cfg["p_color"]:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hue_shift, sat_gain = rng.uniform(-8, 8), rng.uniform(0.6, 1.4)
            levels = np.arange(256, dtype=np.float32)
            hue_lut = np.mod(np.round(levels + hue_shift), 180)  # OpenCV's 8-bit hue runs 0..179
            sat_lut = np.clip(np.round(levels * sat_gain), 0, 255)
            luts = [hue_lut, sat_lut, levels]
            hsv = cv2.merge([cv2.LUT(c, lut.astype(np.uint8)) for c, lut in zip(cv2.split(hsv), luts, strict=True)])
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
            f = (levels / 255.0) ** rng.uniform(0.7, 1.4)
            f = (f - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.1, 0.1)
            img = cv2.LUT(img, np.clip(f * 255, 0, 255).astype(np.uint8))
        if rng.random() < cfg["p_gray"]:
            img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        if rng.random() < cfg["p_blur"]:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.6))
        if rng.random() < cfg["p_noise"]:
            noise = rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(2, 10)
            img = cv2.add(img, noise, dtype=cv2.CV_8U)
        if rng.random() < cfg["p_jpeg"]:
            ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
            if ok:
                img = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
        return img

    def __call__(
        self, rng: np.random.Generator, sample: PackedSample, backgrounds: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        img, alpha = sample.image, sample.alpha
        if backgrounds and rng.random() < self.cfg["p_composite"]:
            img, alpha = self.composite(rng, img, alpha, backgrounds[int(rng.integers(len(backgrounds)))])
        img, alpha = self.geometry(rng, img, alpha)
        return self.photometric(rng, img), alpha


class CompositeDataset:
    """A map-style dataset of random augmented samples (torch DataLoader compatible).

    Index ``g`` means sample ``g % epoch_samples`` of epoch ``g // epoch_samples`` and is drawn from a
    generator seeded by (seed, epoch, sample): a resumed run sees the same data as an uninterrupted one,
    whatever the number of loader workers. :func:`epoch_indices` gives one epoch's indices.
    """

    def __init__(
        self,
        samples: list[PackedSample],
        backgrounds: list[np.ndarray],
        size: int,
        augment: dict[str, Any],
        epoch_samples: int,
        seed: int,
    ) -> None:
        if not samples:
            raise ValueError("no training photos in the pack")
        self.samples = samples
        self.backgrounds = backgrounds
        self.weights = sampling_weights(samples)
        self.augmenter = Augmenter(size, augment)
        self.epoch_samples = epoch_samples
        self.seed = seed

    def epoch_indices(self, epoch: int) -> range:
        return range(epoch * self.epoch_samples, (epoch + 1) * self.epoch_samples)

    def __len__(self) -> int:
        return self.epoch_samples

    def __getitem__(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, i = divmod(int(g), self.epoch_samples)
        rng = np.random.default_rng([self.seed, epoch, i])
        sample = self.samples[int(rng.choice(len(self.samples), p=self.weights))]
        img, alpha = self.augmenter(rng, sample, self.backgrounds)
        # CHW and 1HW uint8: a quarter of the bytes of float32 through the loader's shared memory; the
        # training loop scales them to [0, 1] on the device (see :func:`to_unit_float`).
        return np.ascontiguousarray(img.transpose(2, 0, 1)), alpha[None]
