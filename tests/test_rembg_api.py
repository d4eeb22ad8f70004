"""``matteflow.rembg``: rembg's Python API (``remove``, ``new_session``) on MatteFlow's shipped models, as a
rembg user's code calls it. Each rembg parameter must give exactly what MatteFlow's own ``remove`` gives
with the option it maps to."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matteflow import remove as matteflow_remove
from matteflow.core.errors import InvalidOptionError
from matteflow.rembg import new_session, remove

ASTRONAUT = Path(__file__).parent / "data" / "portraits" / "astronaut.jpg"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    with Image.open(ASTRONAUT) as image:
        return np.asarray(image.convert("RGB").resize((192, 192)))


def test_types_in_and_out_as_rembg(photo: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=95)
    png = remove(buffer.getvalue())
    assert isinstance(png, bytes)
    with Image.open(io.BytesIO(png)) as cut:
        assert cut.format == "PNG" and cut.mode == "RGBA" and cut.size == (192, 192)
    on_white = remove(Image.fromarray(photo), bgcolor=(255, 255, 255, 255))
    assert isinstance(on_white, Image.Image) and on_white.mode == "RGBA"  # rembg keeps RGBA on a colour
    pixels = np.asarray(on_white)
    assert (pixels[..., 3] == 255).all() and (pixels[:12, -12:, :3] > 235).all()  # the sky corner is white now
    mask = remove(photo, only_mask=True)
    assert isinstance(mask, np.ndarray) and mask.shape == (192, 192) and mask.dtype == np.uint8


def test_parameters_map_to_matteflow_options(photo: np.ndarray) -> None:
    people = remove(photo, session=new_session("u2net_human_seg"), only_mask=True)
    general = remove(photo, session=new_session("u2net"), only_mask=True)
    assert np.array_equal(people, matteflow_remove(photo, model="people")[..., 3])
    assert np.array_equal(general, matteflow_remove(photo, model="general")[..., 3])
    assert not np.array_equal(people, general)  # two networks really ran
    matted = remove(photo, alpha_matting=True, alpha_matting_erode_size=15)
    assert np.array_equal(matted, matteflow_remove(photo, refine=True))
    smoothed = remove(photo, post_process_mask=True)
    assert np.array_equal(smoothed, matteflow_remove(photo, feather=True))
    assert np.array_equal(remove(photo, bgcolor=(0, 0, 0, 0)), matteflow_remove(photo))  # transparent colour


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: new_session("sam"), "not available here"),
        (lambda: new_session("u3net"), "model must be one of"),
        (lambda: remove(np.zeros((8, 8, 3), np.uint8), bgcolor=(0, 0, 0, 128)), "alpha must be 255"),
        (lambda: remove(np.zeros((8, 8, 3), np.uint8), bgcolor=(0, 0, 300, 255)), "each from 0 to 255"),
    ],
)
def test_what_has_no_equivalent_is_refused(call: object, words: str) -> None:
    with pytest.raises(InvalidOptionError, match=words):
        call()  # type: ignore[operator]
