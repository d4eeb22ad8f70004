"""Draws ``flower.jpg`` (and its true alpha ``flower_mask.png``): a synthetic product-style photo of an object
that is not a person, made here so it may ship with the tests (no third-party rights).

    python tests/data/objects/make_flower.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 480, 360
PETALS = 14


def draw_flower(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 uint8 RGB photo, H x W uint8 alpha of the flower)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    background = np.stack(
        [60 + 40 * np.sin(xs / 37), 110 + 50 * np.cos(ys / 29), 50 + 30 * np.sin((xs + ys) / 53)], axis=-1
    )
    photo = cv2.GaussianBlur(background.astype(np.float32), (0, 0), 6)
    mask = np.zeros((HEIGHT, WIDTH), np.float32)
    cx, cy = WIDTH // 2, HEIGHT // 2
    for k in range(PETALS):
        angle = k * 2 * np.pi / PETALS
        centre = (int(cx + np.cos(angle) * 70), int(cy + np.sin(angle) * 70))
        axes, degrees = (62, 20), float(np.degrees(angle))
        cv2.ellipse(photo, centre, axes, degrees, 0, 360, (235, 110 + 5 * k, 30), -1, cv2.LINE_AA)
        cv2.ellipse(mask, centre, axes, degrees, 0, 360, 1.0, -1, cv2.LINE_AA)
    cv2.circle(photo, (cx, cy), 38, (120, 70, 20), -1, cv2.LINE_AA)
    cv2.circle(mask, (cx, cy), 38, 1.0, -1, cv2.LINE_AA)
    photo = np.clip(photo + rng.normal(0, 6, photo.shape), 0, 255).astype(np.uint8)
    return photo, (np.clip(mask, 0, 1) * 255).round().astype(np.uint8)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    rgb, alpha = draw_flower()
    cv2.imwrite(str(here / "flower.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(here / "flower_mask.png"), alpha)
