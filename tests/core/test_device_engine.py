"""DeviceMatteEngine (torch post-processing, parallel decode, encoder processes) against MatteEngine."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matteflow.core.engine import MatteEngine, MatteResult
from matteflow.core.errors import ImageTooLargeError, InvalidImageError
from matteflow.core.imageio import encode_image, encode_mask
from matteflow.core.model import load_model
from matteflow.core.options import parse_options

torch = pytest.importorskip("torch")

from matteflow.core.device_engine import DeviceMatteEngine  # noqa: E402
from matteflow.core.encode_pool import EncodePool  # noqa: E402

PHOTOS = sorted((Path(__file__).resolve().parents[1] / "data" / "people").glob("*.jpg"))


@pytest.fixture(scope="module")
def encoder() -> Iterator[EncodePool]:
    pool = EncodePool(2)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def engines(encoder: EncodePool) -> Iterator[tuple[MatteEngine, DeviceMatteEngine]]:
    model = load_model("default", "cpu", threads=1)  # the shipped network: real mattes of real photos
    device = DeviceMatteEngine(model, max_pixels=10**8, device="cpu", decode_threads=2, encoder=encoder)
    yield MatteEngine(model, max_pixels=10**8), device
    device.close()


def pixels_of(result: MatteResult) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.image))).astype(int)


def test_a_batch_with_bad_images_gives_the_same_outcomes_as_the_numpy_engine(engines) -> None:
    numpy_engine, device_engine = engines
    datas = [p.read_bytes() for p in PHOTOS[:3]]
    datas.insert(1, b"not an image")
    datas.append(PHOTOS[3].read_bytes()[:3000])  # truncated: fails at decode, after the header check
    options = parse_options(alpha_threshold=10, feather=True, mask=True)  # stays on the device path (no refine)

    expected = numpy_engine.process_many(datas, options)
    got = device_engine.process_many(datas, options)

    assert [type(r).__name__ for r in got] == [type(r).__name__ for r in expected]
    assert [type(r).__name__ for r in got] == ["MatteResult", "InvalidImageError"] + ["MatteResult"] * 2 + [
        "InvalidImageError"
    ]
    for want, have in zip(expected, got, strict=True):
        if not isinstance(want, MatteResult):
            continue
        assert isinstance(have, MatteResult)
        assert (have.width, have.height, have.extension) == (want.width, want.height, want.extension)
        assert have.confidence == want.confidence
        assert set(have.timings) == {"decode", "inference", "postprocess", "encode"}
        mask_diff = np.abs(
            pixels_of(MatteResult(have.mask, None, "", "", 0, 0, 0))
            - pixels_of(MatteResult(want.mask, None, "", "", 0, 0, 0))
        )
        assert mask_diff.max() <= 1 and (mask_diff == 0).mean() > 0.999
        assert (np.abs(pixels_of(have) - pixels_of(want)) <= 2).mean() > 0.999


def test_one_image_through_process_bytes_and_process_array(engines) -> None:
    numpy_engine, device_engine = engines
    data = PHOTOS[4].read_bytes()
    options = parse_options(background="#0000ff", erode=2)
    want, have = numpy_engine.process_bytes(data, options), device_engine.process_bytes(data, options)
    assert have.media_type == want.media_type == "image/png"
    assert (np.abs(pixels_of(have) - pixels_of(want)) <= 2).mean() > 0.999
    rgb = np.asarray(Image.open(PHOTOS[4]).convert("RGB"))
    (pixels_np, mask_np), (pixels_t, mask_t) = (
        numpy_engine.process_array(rgb, options),
        device_engine.process_array(rgb, options),
    )
    assert pixels_t.shape == pixels_np.shape and mask_t.dtype == np.uint8
    assert np.abs(mask_t.astype(int) - mask_np).max() <= 1


def test_too_large_and_empty_inputs_fail_alone(engines) -> None:
    _, device_engine = engines
    small = DeviceMatteEngine(device_engine.model, max_pixels=100_000, device="cpu", decode_threads=2)
    try:
        outcomes = small.process_many([PHOTOS[0].read_bytes(), b"", PHOTOS[4].read_bytes()], parse_options())
    finally:
        small.close()
    assert isinstance(outcomes[0], ImageTooLargeError)  # 640 x 427 > 100 000 pixels
    assert isinstance(outcomes[1], InvalidImageError)
    assert isinstance(outcomes[2], ImageTooLargeError)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_chunks_from_several_threads_at_once_get_their_own_results(engines, device: str) -> None:
    """A GPU worker runs several chunks at once, one per thread, uploads, kernels and downloads interleaved on
    the device: every chunk must get exactly the cut-outs it would get alone."""
    _, cpu_engine = engines
    engine = DeviceMatteEngine(cpu_engine.models, max_pixels=10**8, device=device, decode_threads=2)
    options = parse_options(mask=True)
    datas = [p.read_bytes() for p in PHOTOS[:6]]
    chunks = [datas[i : i + 2 + i % 2] for i in range(5)]  # overlapping chunks of 2 and 3 images
    try:
        alone = [engine.process_many(chunk, options) for chunk in chunks]
        with ThreadPoolExecutor(3) as pool:
            together = list(pool.map(lambda chunk: engine.process_many(chunk, options), chunks))
    finally:
        engine.close()
    for want_chunk, got_chunk in zip(alone, together, strict=True):
        for want, got in zip(want_chunk, got_chunk, strict=True):
            assert isinstance(want, MatteResult) and isinstance(got, MatteResult)
            assert got.mask == want.mask and got.image == want.image


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_the_encoder_pool_encodes_exactly_as_inline(kind: str) -> None:
    encoder = EncodePool(2, kind=kind)
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (90, 120, 4), dtype=np.uint8)
    rgb = np.ascontiguousarray(rgba[:, :, :3])
    mask = np.ascontiguousarray(rgba[:, :, 3])
    jobs = [(rgba, "png", mask), (rgb, "jpeg", None), (rgba, "webp", None), (rgb, "png", None)]

    try:
        encoded = encoder.encode_many(jobs)
        pids = encoder.pids()
    finally:
        encoder.close()

    for (pixels, fmt, job_mask), (image, mask_bytes, seconds) in zip(jobs, encoded, strict=True):
        assert image == encode_image(pixels, fmt)  # the encoders are deterministic: byte-identical
        assert mask_bytes == (encode_mask(job_mask) if job_mask is not None else None)
        assert seconds >= 0
    assert encoder.kind == kind
    if kind == "processes":
        assert pids and os.getpid() not in pids
    else:
        assert pids == []  # threads of this process


def test_an_unknown_encoder_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="threads or processes"):
        EncodePool(2, kind="fibres")


def test_an_encoding_error_reaches_the_caller(encoder: EncodePool) -> None:
    with pytest.raises(ValueError, match="JPEG has no alpha"):
        encoder.encode_many([(np.zeros((8, 8, 4), np.uint8), "jpeg", None)])
    # and the pool still works afterwards
    ((image, _, _),) = encoder.encode_many([(np.zeros((8, 8, 3), np.uint8), "png", None)])
    assert image.startswith(b"\x89PNG")


def test_inside_a_daemonic_process_the_encoders_are_threads() -> None:
    # A Celery prefork child is daemonic and may not start processes: the pool must still encode.
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:  # pool workers are daemonic
        kind, size = pool.apply(_encode_in_a_daemon)
    assert (kind, size) == ("threads", 2)


def _encode_in_a_daemon() -> tuple[str, int]:
    pool = EncodePool(2, kind="processes")  # asked for, but a daemon may not start them
    try:
        encoded = pool.encode_many([(np.zeros((8, 8, 3), np.uint8), "png", None)] * 2)
        assert all(image.startswith(b"\x89PNG") for image, _, _ in encoded)
        return pool.kind, len(encoded)
    finally:
        pool.close()
