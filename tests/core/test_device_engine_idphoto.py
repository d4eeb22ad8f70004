"""The torch post-processing engine hands issue 16's options (ID photos, keep=main, size limits, sheets) and
crops to the subject to the numpy path: the same results as MatteEngine, batch or single image, with their
warnings."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from matteflow.core.engine import MatteEngine, MatteResult
from matteflow.core.model import load_model
from matteflow.core.options import parse_options

pytest.importorskip("torch")

from matteflow.core.device_engine import DeviceMatteEngine, needs_numpy_path  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
PORTRAIT = (DATA / "portraits" / "astronaut.jpg").read_bytes()
NO_FACE = (DATA / "people" / "000000522418.jpg").read_bytes()


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[MatteEngine, DeviceMatteEngine]]:
    model = load_model("default", "cpu", threads=1)
    device = DeviceMatteEngine(model, max_pixels=10**8, device="cpu", decode_threads=2)
    yield MatteEngine(model, max_pixels=10**8), device
    device.close()


def test_which_options_need_the_numpy_path() -> None:
    assert not needs_numpy_path(parse_options(preset="id-photo"))
    for options in (
        {"preset": "id-2inch"},
        {"keep": "main"},
        {"max_kb": 50},
        {"crop": "subject"},
        {"output_size": "64"},
        {"refine": True},
    ):
        assert needs_numpy_path(parse_options(options))
    assert needs_numpy_path(parse_options(background_image=True))


@pytest.mark.parametrize(
    "options",
    [
        {"preset": "id-2inch", "background": "#438edb"},
        {"keep": "main"},
        {"max_kb": 30, "format": "jpeg"},
        {"preset": "marketplace"},
        {"refine": True},
    ],
)
def test_batch_and_single_give_the_numpy_results(engines: tuple, options: dict) -> None:
    numpy_engine, device_engine = engines
    parsed = parse_options(options)
    expected = numpy_engine.process_many([PORTRAIT, NO_FACE], parsed)
    batch = device_engine.process_many([PORTRAIT, NO_FACE], parsed)
    single = device_engine.process_bytes(NO_FACE, parsed)
    for want, got in zip(expected, batch, strict=True):
        assert isinstance(got, MatteResult) and isinstance(want, MatteResult)
        assert got.image == want.image and got.warnings == want.warnings
    assert single.image == expected[1].image and single.warnings == expected[1].warnings
    if parsed.id_size:
        assert Image.open(io.BytesIO(single.image)).size == (413, 579)
        assert any("no face found" in w for w in single.warnings)
