"""``remove(..., instruction=...)``: words in, the options they become applied, explicit options winning."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from matteflow import remove
from matteflow.core.engine import MatteEngine
from matteflow.core.errors import InvalidOptionError


@pytest.fixture(scope="module")
def engine() -> MatteEngine:
    from matteflow.core.model import load_model

    return MatteEngine(load_model("unet-random", "cpu"), max_pixels=10_000_000)


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (160, 120, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_instruction_becomes_an_id_photo(engine: MatteEngine) -> None:
    result = Image.open(io.BytesIO(remove(photo(), engine=engine, instruction="红底一寸照")))
    assert result.format == "JPEG" and result.size == (295, 413)


def test_explicit_options_win_over_the_instruction(engine: MatteEngine) -> None:
    result = Image.open(io.BytesIO(remove(photo(), engine=engine, instruction="jpg 白底", format="png")))
    assert result.format == "PNG" and result.mode == "RGB"


def test_pil_in_pil_out_with_an_instruction(engine: MatteEngine) -> None:
    image = Image.open(io.BytesIO(photo()))
    assert remove(image, engine=engine, instruction="透明背景 PNG").mode == "RGBA"


def test_contradicting_instruction_raises(engine: MatteEngine) -> None:
    with pytest.raises(InvalidOptionError, match="cannot be transparent"):
        remove(photo(), engine=engine, instruction="transparent jpeg")
