"""Synthetic people photos and training packs for the training tests (no real data needed)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def synthetic_person(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a bright 'person' (head ellipse + body rectangle) and its 0/255 mask."""
    img = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 2)
    mask = np.zeros((h, w), np.uint8)
    cx = int(rng.integers(w // 3, 2 * w // 3))
    cv2.ellipse(mask, (cx, h // 3), (w // 8, h // 7), 0, 0, 360, 255, -1)
    cv2.rectangle(mask, (cx - w // 5, h // 2), (cx + w // 5, h - 1), 255, -1)
    colour = rng.integers(150, 255, 3)
    img[mask > 0] = colour
    return img, mask


def write_synthetic_pack(root: Path, n_people: int = 8, n_backgrounds: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "people").mkdir(parents=True)
    (root / "backgrounds").mkdir()
    entries = []
    for i in range(n_people):
        img, mask = synthetic_person(rng, 96, 72)
        key = f"synthetic__{i:03d}"
        cv2.imwrite(str(root / "people" / f"{key}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "people" / f"{key}.label.png"), mask)
        split = "holdout" if i == 0 else ("val" if i == 1 else "train")
        entries.append({"key": key, "set": "synthetic", "split": split, "label": "mask"})
    names = []
    for i in range(n_backgrounds):
        bg = rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)
        names.append(f"bg{i}.jpg")
        cv2.imwrite(str(root / "backgrounds" / names[-1]), bg)
    (root / "index.json").write_text(json.dumps({"people": entries, "backgrounds": names}))
    return root
