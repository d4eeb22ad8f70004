from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from matteflow.core import iccprofile as icc
from matteflow.core.engine import MatteEngine, make_network_input
from matteflow.core.errors import InvalidImageError, ModelError
from matteflow.core.model import load_model
from matteflow.core.options import parse_options

from .conftest import encode


def test_network_input_is_padded_to_the_stride(portrait_rgb: np.ndarray) -> None:
    tensor, (h, w) = make_network_input(portrait_rgb, 320)
    assert (h, w) == (320, 213)
    assert tensor.shape == (3, 320, 224) and tensor.dtype == np.float32
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0


def test_transparent_png_with_mask(random_engine: MatteEngine, portrait_jpeg: bytes) -> None:
    result = random_engine.process_bytes(portrait_jpeg, parse_options(mask=True))
    image = Image.open(io.BytesIO(result.image))
    mask = Image.open(io.BytesIO(result.mask or b""))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (160, 240)
    assert mask.mode == "L" and mask.size == (160, 240)
    assert np.array_equal(np.asarray(image)[:, :, 3], np.asarray(mask))
    assert set(result.timings) == {"decode", "inference", "postprocess", "encode"}
    assert result.media_type == "image/png" and result.extension == "png"


@pytest.mark.parametrize(("fmt", "mode"), [("jpeg", "RGB"), ("webp", "RGB")])
def test_coloured_background_formats(random_engine: MatteEngine, portrait_jpeg: bytes, fmt: str, mode: str) -> None:
    result = random_engine.process_bytes(portrait_jpeg, parse_options(format=fmt, background="#00ff00"))
    image = Image.open(io.BytesIO(result.image))
    assert image.format == fmt.upper() and image.mode == mode


def test_max_side_caps_the_output(random_engine: MatteEngine, portrait_jpeg: bytes) -> None:
    result = random_engine.process_bytes(portrait_jpeg, parse_options(max_side=120))
    assert (result.width, result.height) == (80, 120)
    assert Image.open(io.BytesIO(result.image)).size == (80, 120)


@pytest.mark.parametrize("refine", [False, True])
def test_input_transparency_is_kept(random_engine: MatteEngine, portrait_rgb: np.ndarray, refine: bool) -> None:
    rgba = np.dstack([portrait_rgb, np.full(portrait_rgb.shape[:2], 255, np.uint8)])
    rgba[:, :50, 3] = 0
    pixels, alpha = random_engine.process_array(rgba[:, :, :3], parse_options(refine=refine), rgba[:, :, 3])
    assert (alpha[:, :50] == 0).all() and (pixels[:, :50, 3] == 0).all()


def test_a_photo_in_adobe_rgb_comes_out_like_its_srgb_twin(
    random_engine: MatteEngine, portrait_rgb: np.ndarray
) -> None:
    """A camera set to Adobe RGB writes other numbers for the same colours; the cut-out (written untagged, read
    as sRGB everywhere) must show the colours, not the numbers."""
    adobe = ImageCms.profileToProfile(
        Image.fromarray(portrait_rgb),
        ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")),
        ImageCms.ImageCmsProfile(io.BytesIO(icc.rgb_profile())),
        outputMode="RGB",
    )
    options = parse_options()  # transparent PNG: the foreground colours are written whatever the matte
    tagged = random_engine.process_bytes(encode(adobe, "PNG", icc_profile=icc.rgb_profile()), options)
    twin = random_engine.process_bytes(encode(Image.fromarray(portrait_rgb), "PNG"), options)
    read = [np.asarray(Image.open(io.BytesIO(result.image)), np.int16) for result in (tagged, twin)]
    assert np.abs(read[0] - read[1]).mean() < 1.5
    adobe.info.pop("icc_profile", None)  # Pillow tags the converted image itself; the same numbers untagged:
    untagged = random_engine.process_bytes(encode(adobe, "PNG"), options)
    misread = np.asarray(Image.open(io.BytesIO(untagged.image)), np.int16)
    assert np.abs(misread - read[1])[:, :, :3].mean() > 4


def test_a_bad_image_in_a_batch_spares_the_others(random_engine: MatteEngine, portrait_jpeg: bytes) -> None:
    outcomes = random_engine.process_many([portrait_jpeg, b"not an image", portrait_jpeg], parse_options())
    assert len(outcomes) == 3
    assert isinstance(outcomes[1], InvalidImageError)
    assert outcomes[0].image == outcomes[2].image  # type: ignore[union-attr]


def test_onnx_export_matches_torch(tmp_path, portrait_rgb: np.ndarray) -> None:
    torch = pytest.importorskip("torch")
    from matteflow.core import unet

    torch.manual_seed(0)
    module = unet.build_unet().eval()
    path = tmp_path / "random.onnx"
    unet.export_onnx(module, path, size=320)
    onnx_model = load_model(f"onnx:{path}")
    tensor, _ = make_network_input(portrait_rgb, 320)
    with torch.inference_mode():
        expected = module(torch.from_numpy(tensor[None]))[:, 0].numpy()
    got = onnx_model.predict(tensor[None])
    assert got.shape == expected.shape == (1, 320, 224)
    assert np.abs(got - expected).max() < 1e-3
    engine = MatteEngine(onnx_model, max_pixels=10_000_000)
    assert engine.process_bytes(encode(Image.fromarray(portrait_rgb), "PNG"), parse_options()).width == 160


def test_model_errors_are_clear(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_model(f"onnx:{tmp_path / 'missing.onnx'}")
    (tmp_path / "broken.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        load_model(f"onnx:{tmp_path / 'broken.onnx'}")
    (tmp_path / "broken.safetensors").write_bytes(b"garbage")  # safetensors' own error, not an OSError
    with pytest.raises(ModelError, match="cannot load torch weights"):
        load_model(f"torch:{tmp_path / 'broken.safetensors'}", "cpu")
    with pytest.raises(ModelError, match="unknown model spec"):
        load_model("resnet")
    with pytest.raises(ValueError, match="multiples of 32"):
        load_model("unet-random", "cpu").predict(np.zeros((1, 3, 100, 100), np.float32))


@pytest.mark.parametrize("spec", ["default", "torch"])
def test_shipped_model_averages_the_mirror_view(spec: str, portrait_rgb: np.ndarray) -> None:
    # The sidecar asks for test-time flip averaging: built into the ONNX graph, wrapped around torch weights.
    # Only then is the matte of a mirrored photo exactly the mirrored matte.
    from matteflow.core.model import shipped_model_files

    files = shipped_model_files()
    assert files.sidecar["flip_average"] is True
    if spec == "torch":
        pytest.importorskip("torch")
        spec = f"torch:{files.weights}"
    model = load_model(spec, "cpu")
    tensor, _ = make_network_input(portrait_rgb, 320)
    batch = np.stack([tensor, tensor[:, :, ::-1]])
    alpha = model.predict(np.ascontiguousarray(batch))
    np.testing.assert_allclose(alpha[1], alpha[0][:, ::-1], atol=1e-4)
