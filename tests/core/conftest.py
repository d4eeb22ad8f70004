"""Small real images built in memory for the core tests."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def portrait_rgb() -> np.ndarray:
    """A 240 x 160 RGB 'portrait': a textured warm ellipse (subject) on a cool gradient (background)."""
    h, w = 240, 160
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([40 + xx * 0.5, 90 + yy * 0.3, 200 - yy * 0.2], axis=2)
    inside = ((xx - 80) / 50.0) ** 2 + ((yy - 130) / 95.0) ** 2 <= 1.0
    rng = np.random.default_rng(7)
    subject = np.stack([210 + 0 * xx, 150 + 0 * xx, 120 + 0 * xx], axis=2) + rng.normal(0, 6, (h, w, 3))
    image = np.where(inside[:, :, None], subject, background)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def portrait_jpeg(portrait_rgb: np.ndarray) -> bytes:
    return encode(Image.fromarray(portrait_rgb), "JPEG", quality=92)


@pytest.fixture(scope="session")
def random_engine():
    """An engine with the untrained network of the shipped architecture (plumbing, not quality)."""
    from matteflow.core.engine import MatteEngine
    from matteflow.core.model import load_model

    return MatteEngine(load_model("unet-random", "cpu"), max_pixels=10_000_000)


@pytest.fixture(scope="module")
def shipped_engine():
    """An engine with both shipped networks behind people / general (one thread each), as production runs."""
    from matteflow.core.engine import MatteEngine
    from matteflow.core.registry import ModelSet

    return MatteEngine(ModelSet.from_specs("default", "general", "cpu", threads=1), max_pixels=50_000_000)
