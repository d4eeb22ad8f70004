from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from matteflow import remove
from matteflow.core.engine import MatteEngine
from matteflow.core.errors import InvalidImageError, InvalidOptionError
from matteflow.core.model import load_model


@pytest.fixture(scope="module")
def engine() -> MatteEngine:
    return MatteEngine(load_model("unet-random", "cpu"), max_pixels=10_000_000)


def test_remove_keeps_the_input_type(engine: MatteEngine) -> None:
    pixels = np.random.default_rng(3).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    out_array = remove(pixels, engine=engine)
    assert isinstance(out_array, np.ndarray) and out_array.shape == (64, 96, 4)
    out_pil = remove(Image.fromarray(pixels), engine=engine, background="#ffffff")
    assert isinstance(out_pil, Image.Image) and out_pil.mode == "RGB" and out_pil.size == (96, 64)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    out_bytes = remove(buffer.getvalue(), engine=engine, format="webp")
    assert isinstance(out_bytes, bytes) and Image.open(io.BytesIO(out_bytes)).format == "WEBP"


def test_remove_reports_bad_input(engine: MatteEngine) -> None:
    with pytest.raises(InvalidImageError):
        remove(b"GIF89a nonsense", engine=engine)
    with pytest.raises(InvalidOptionError):
        remove(np.zeros((8, 8, 3), np.uint8), engine=engine, erode="lots")
    with pytest.raises(TypeError):
        remove("photo.jpg", engine=engine)  # type: ignore[call-overload]
