"""The U-Net contract: shapes, value range, errors, safetensors and ONNX round trips, sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from matteflow.core.unet import (  # noqa: E402
    ARCHITECTURES,
    FlipAveraged,
    ModelSidecar,
    build_unet,
    export_onnx,
    load_unet_safetensors,
    read_sidecar,
    save_unet_safetensors,
    write_sidecar,
)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_output_is_alpha_of_input_size(arch: str) -> None:
    model = build_unet(arch).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 1, 64, 96)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_shipped_arch_fits_size_budget() -> None:
    shipped = json.loads((Path(__file__).resolve().parents[2] / "models" / "matteflow-unet.json").read_text())
    params = sum(p.numel() for p in build_unet(shipped["arch"]).parameters())
    assert params * 4 < 10_000_000  # <= 10 MB even in float32


def test_bad_shapes_and_names_say_what_would_work() -> None:
    model = build_unet("matteflow-unet-xs").eval()
    with pytest.raises(ValueError, match="multiples of 32.*64 x 96"):
        model(torch.rand(1, 3, 65, 96))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        model(torch.rand(1, 4, 64, 64))
    with pytest.raises(ValueError, match="known: .*matteflow-unet-s"):
        build_unet("resnet-9000")
    with pytest.raises(ValueError, match="unknown config keys"):
        build_unet("matteflow-unet-s", depth=3)


def test_config_overrides_change_the_network() -> None:
    small = build_unet("matteflow-unet-s", refine_channels=8)
    assert small.config.refine_channels == 8


def test_safetensors_round_trip(tmp_path: Path) -> None:
    model = build_unet("matteflow-unet-xs").eval()
    x = torch.rand(1, 3, 64, 64)
    path = tmp_path / "w.safetensors"
    save_unet_safetensors(model, path, half=True)
    loaded = load_unet_safetensors(path, "matteflow-unet-xs", "cpu")
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=2e-3)
    with pytest.raises(ValueError, match="does not fit architecture"):
        load_unet_safetensors(path, "matteflow-unet-s", "cpu")
    with pytest.raises(FileNotFoundError):
        load_unet_safetensors(tmp_path / "missing.safetensors", "matteflow-unet-xs", "cpu")


def test_onnx_export_matches_torch_with_dynamic_axes(tmp_path: Path) -> None:
    model = build_unet("matteflow-unet-xs").eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, path, size=64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["alpha"]
    x = np.random.default_rng(0).random((2, 3, 96, 128), dtype=np.float32)  # other batch and size than export
    got = session.run(["alpha"], {"image": x})[0]
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    with pytest.raises(ValueError, match="multiple of 32"):
        export_onnx(model, tmp_path / "bad.onnx", size=100)


def test_sidecar_round_trip_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_sidecar(path, ModelSidecar(arch="matteflow-unet-s", input_size=320, version="1", metrics={"iou": 0.9}))
    side = read_sidecar(path)
    assert (side.arch, side.input_size, side.metrics["iou"]) == ("matteflow-unet-s", 320, 0.9)
    assert side.flip_average is False  # older sidecars without the key: no test-time flip
    write_sidecar(path, ModelSidecar(arch="matteflow-unet-m", input_size=320, version="2", flip_average=True))
    assert read_sidecar(path).flip_average is True
    path.write_text(json.dumps({"arch": "matteflow-unet-s", "input_size": 300, "version": "1"}))
    with pytest.raises(ValueError, match="multiple of 32"):
        read_sidecar(path)
    path.write_text(json.dumps({"arch": "matteflow-unet-s"}))
    with pytest.raises(ValueError, match="missing keys"):
        read_sidecar(path)


def test_flip_average_is_mirror_symmetric_and_exports(tmp_path: Path) -> None:
    net = build_unet("matteflow-unet-xs").eval()
    tta = FlipAveraged(net).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        out = tta(x)
        # A plain network is not mirror-equivariant; the averaged one is, by construction.
        assert not torch.allclose(net(x.flip(-1)), net(x).flip(-1), atol=1e-4)
        torch.testing.assert_close(tta(x.flip(-1)), out.flip(-1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out, (net(x) + net(x.flip(-1)).flip(-1)) / 2, atol=1e-5, rtol=1e-5)
    path = tmp_path / "tta.onnx"
    export_onnx(net, path, size=64, flip_average=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["alpha"], {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, out.numpy(), atol=1e-4)
