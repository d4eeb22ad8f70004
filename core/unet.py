"""MatteFlow's own portrait matting network: a light U-Net built from depthwise-separable blocks.

The network takes float32 ``N x 3 x H x W`` RGB in ``[0, 1]`` (H and W multiples of 32) and returns
``N x 1 x H x W`` alpha in ``[0, 1]``. ImageNet normalisation and the final sigmoid live *inside* the model so
every caller (engine, ONNX runtime, training, evaluation) feeds the same thing: pixels divided by 255.

Architectures are built by name from :data:`ARCHITECTURES` (``build_unet("matteflow-unet-s")``). Weights are
stored as safetensors (:func:`save_unet_safetensors`) next to a JSON sidecar (:func:`write_sidecar`) that
names the architecture and the input size the network was trained for.

This module is the only one in ``matteflow.core`` that imports torch at import time; the engine imports it
lazily, inside its torch backend.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRIDE = 32  # the encoder halves the resolution five times


@dataclass(frozen=True)
class UNetConfig:
    """Widths and depths of one named architecture.

    ``enc_channels``/``enc_blocks``/``enc_expand`` describe the four encoder stages at strides 4, 8, 16, 32
    (after a stride-2 stem of ``stem_channels``); ``dec_channels`` are the decoder widths at strides
    16, 8, 4, 2; ``refine_channels`` is the width of the full-resolution refinement head that sees the RGB
    input again (it is what sharpens hair and edges into a soft alpha).
    """

    stem_channels: int = 16
    enc_channels: tuple[int, ...] = (24, 40, 80, 160)
    enc_blocks: tuple[int, ...] = (2, 3, 4, 3)
    enc_expand: tuple[int, ...] = (4, 4, 4, 4)
    dec_channels: tuple[int, ...] = (80, 40, 24, 16)
    refine_channels: int = 16
    context_dilations: tuple[int, ...] = (1, 2, 4)


ARCHITECTURES: dict[str, UNetConfig] = {
    # 0.88 M parameters (3.5 MB float32 ONNX): the first shipped model (v1); ~12 ms faster per image on one
    # CPU thread than -m, for CPU-bound deployments that accept a less accurate matte.
    "matteflow-unet-s": UNetConfig(),
    # Smaller and faster, for tests and CPU-only smoke training.
    "matteflow-unet-xs": UNetConfig(
        stem_channels=8,
        enc_channels=(16, 24, 48, 96),
        enc_blocks=(1, 2, 2, 2),
        enc_expand=(3, 3, 3, 3),
        dec_channels=(48, 24, 16, 12),
        refine_channels=8,
        context_dilations=(1, 2),
    ),
    # The shipped model since v2: 2.17 M parameters (8.7 MB float32 ONNX, 4.4 MB float16 safetensors). Wider
    # and deeper than -s; on CPU it costs ~48 ms vs ~36 ms at 320 x 320 (one thread), a few % of the pipeline.
    "matteflow-unet-m": UNetConfig(
        stem_channels=24,
        enc_channels=(32, 56, 112, 224),
        enc_blocks=(2, 3, 5, 3),
        enc_expand=(4, 4, 5, 5),
        dec_channels=(112, 56, 32, 24),
        refine_channels=24,
        context_dilations=(1, 2, 4),
    ),
}


def conv_bn_act(
    cin: int,
    cout: int,
    kernel: int = 3,
    stride: int = 1,
    groups: int = 1,
    dilation: int = 1,
    act: bool = True,
) -> nn.Sequential:
    """Conv + BatchNorm (+ ReLU6): BN folds into the conv at export, ReLU6 maps to one ONNX Clip."""
    pad = dilation * (kernel // 2)
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (strided or dilated), 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(cin, hidden, kernel=1))
        layers.append(conv_bn_act(hidden, hidden, stride=stride, groups=hidden, dilation=dilation))
        layers.append(conv_bn_act(hidden, cout, kernel=1, act=False))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


class SeparableConv(nn.Module):
    """Depthwise 3x3 + pointwise 1x1, each with BN and ReLU6: the decoder's cheap 3x3 conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = conv_bn_act(cin, cin, groups=cin)
        self.pointwise = conv_bn_act(cin, cout, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ContextBlock(nn.Module):
    """Widens the receptive field at stride 32: parallel dilated depthwise branches plus global pooling.

    Whole-body shots need context from the far side of the picture to tell a person from a person-coloured
    background; at 320 px the stride-32 map is only 10 x 10, so dilations of 1-4 already see all of it.
    """

    def __init__(self, channels: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(conv_bn_act(channels, channels, groups=channels, dilation=d) for d in dilations)
        self.pool_proj = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.Sigmoid())
        self.fuse = conv_bn_act(channels * len(dilations), channels, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.cat([b(x) for b in self.branches], dim=1)
        fused = self.fuse(feats)
        # Squeeze-and-excitation style gate from the global mean: cheap global context.
        gate = self.pool_proj(x.mean(dim=(2, 3), keepdim=True))
        return x + fused * gate


class DecoderStage(nn.Module):
    """Upsample x2, concatenate the encoder skip, then one separable 3x3 conv."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv = SeparableConv(cin + skip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class MatteUNet(nn.Module):
    """The light U-Net. See :class:`UNetConfig` for the shape of each part."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = conv_bn_act(3, config.stem_channels, stride=2)  # stride 2
        stages: list[nn.Module] = []
        cin = config.stem_channels
        for cout, blocks, expand in zip(config.enc_channels, config.enc_blocks, config.enc_expand, strict=True):
            layers = [InvertedResidual(cin, cout, stride=2, expand=expand)]
            layers += [InvertedResidual(cout, cout, stride=1, expand=expand) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.encoder = nn.ModuleList(stages)  # strides 4, 8, 16, 32
        self.context = ContextBlock(cin, config.context_dilations)
        skips = [*reversed(config.enc_channels[:-1]), config.stem_channels]  # strides 16, 8, 4, 2
        decoder: list[nn.Module] = []
        for skip, cout in zip(skips, config.dec_channels, strict=True):
            decoder.append(DecoderStage(cin, skip, cout))
            cin = cout
        self.decoder = nn.ModuleList(decoder)
        # Full-resolution head: sees the (normalised) RGB again, so edges follow the picture, not the
        # stride-2 feature grid.
        r = config.refine_channels
        # Separable convs only: a dense 3x3 at full resolution would cost as much as the whole encoder.
        self.refine = nn.Sequential(
            SeparableConv(cin + 3, r),
            conv_bn_act(r, r, groups=r),
            nn.Conv2d(r, 1, 1),
        )
        # Coarse logits at stride 2, used for deep supervision while training and as the head's residual.
        self.coarse = nn.Conv2d(cin, 1, 1)

    def forward_logits(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (full-resolution logits, stride-2 coarse logits) for training losses."""
        check_input_shape(image)
        x = (image - self.mean) / self.std
        feats = [self.stem(x)]
        for stage in self.encoder:
            feats.append(stage(feats[-1]))
        y = self.context(feats[-1])
        for stage, skip in zip(self.decoder, reversed(feats[:-1]), strict=True):
            y = stage(y, skip)
        coarse = self.coarse(y)
        size = image.shape[-2:]
        y_full = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        coarse_full = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
        logits = coarse_full + self.refine(torch.cat([y_full, x], dim=1))
        return logits, coarse

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward_logits(image)[0])


class FlipAveraged(nn.Module):
    """Test-time augmentation: the mean of the matte of the image and the mirrored matte of its mirror image.

    Both views go through the network as one doubled batch. On the project's held-out splits this gained
    +0.005 to +0.015 mean IoU for one extra network pass (see models/README.md). The shipped ONNX graph has it
    built in (export with ``flip_average=True``); for torch weights the sidecar's ``flip_average`` says to wrap.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        n = image.shape[0]
        both = self.net(torch.cat([image, image.flip(-1)], dim=0))
        return (both[:n] + both[n:].flip(-1)) * 0.5


def for_inference(net: nn.Module, sidecar: Mapping[str, Any]) -> nn.Module:
    """``net`` in eval mode as its sidecar says to run it: wrapped in :class:`FlipAveraged` when it asks so.

    The one place where torch loaders apply the sidecar (the ONNX export has the same built into its graph).
    """
    net = net.eval()
    return FlipAveraged(net).eval() if sidecar.get("flip_average") else net


def check_input_shape(image: torch.Tensor) -> None:
    """Raise ValueError naming a shape that would work when ``image`` is not N x 3 x H x W, H, W % 32 == 0."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an N x 3 x H x W RGB tensor, got shape {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if h % STRIDE or w % STRIDE:
        ok = (max(STRIDE, round(h / STRIDE) * STRIDE), max(STRIDE, round(w / STRIDE) * STRIDE))
        raise ValueError(
            f"height and width must be multiples of {STRIDE}, got {h} x {w}; pad or resize to e.g. {ok[0]} x {ok[1]}"
        )


def build_unet(arch: str = "matteflow-unet-s", **config: Any) -> MatteUNet:
    """Build a named architecture; keyword arguments override fields of its :class:`UNetConfig`."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    base = asdict(ARCHITECTURES[arch])
    unknown = set(config) - set(base)
    if unknown:
        raise ValueError(f"unknown config keys for {arch}: {', '.join(sorted(unknown))}")
    base.update({k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    return MatteUNet(UNetConfig(**base))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_onnx(model: nn.Module, path: str | Path, size: int = 320, flip_average: bool = False) -> None:
    """Export to ONNX (opset 17): input "image" N x 3 x H x W, output "alpha" N x 1 x H x W, all dynamic.

    Exported in eval mode on the CPU in float32 (BatchNorm folded by onnxruntime's graph optimiser).
    ``flip_average`` builds :class:`FlipAveraged` into the graph.
    """
    if size % STRIDE:
        raise ValueError(f"export size must be a multiple of {STRIDE}, got {size}")
    was_training = model.training
    model = model.eval()
    param = next(model.parameters())
    model_cpu = model.to("cpu", torch.float32)
    graph = FlipAveraged(model_cpu).eval() if flip_average else model_cpu
    dummy = torch.rand(1, 3, size, size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(
            graph,
            (dummy,),
            str(path),
            input_names=["image"],
            output_names=["alpha"],
            dynamic_axes={
                "image": {0: "batch", 2: "height", 3: "width"},
                "alpha": {0: "batch", 2: "height", 3: "width"},
            },
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    model.to(param.device, param.dtype)
    model.train(was_training)


def save_unet_safetensors(model: nn.Module, path: str | Path, half: bool = False) -> None:
    """Write the state dict (BatchNorm running stats included) as safetensors; ``half`` stores float16."""
    from safetensors.torch import save_file

    state = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        if half and t.is_floating_point():
            t = t.half()
        state[name] = t
    arch_cfg = getattr(model, "config", None)
    metadata = {"format": "pt"}
    if isinstance(arch_cfg, UNetConfig):
        metadata["config"] = json.dumps(asdict(arch_cfg))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    Path(path).chmod(0o644)  # safetensors writes 0600; shipped weights must be readable by the worker user


def load_unet_safetensors(
    path: str | Path,
    arch: str = "matteflow-unet-s",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> MatteUNet:
    """Build ``arch``, load weights from ``path`` and return it in eval mode on ``device`` as ``dtype``.

    Raises FileNotFoundError for a missing file and ValueError when the weights do not fit the architecture
    (the message names the mismatching tensors).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    model = build_unet(arch)
    state = load_file(str(path))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} does not fit architecture {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shape {wrong[:3]}"
        )
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state)
    return model.to(device=device, dtype=dtype).eval()


@dataclass
class ModelSidecar:
    """The JSON file beside shipped weights (models/matteflow-unet.json)."""

    arch: str = "matteflow-unet-s"
    input_size: int = 320  # long side the network runs at; a multiple of 32
    version: str = "0"
    flip_average: bool = False  # run with FlipAveraged (built into the ONNX graph; torch loaders wrap)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r} in sidecar")
        if self.input_size <= 0 or self.input_size % STRIDE:
            raise ValueError(f"input_size must be a positive multiple of {STRIDE}, got {self.input_size}")


def read_sidecar(path: str | Path) -> ModelSidecar:
    """Read and validate a model sidecar JSON; unknown keys are kept out, required ones must be present."""
    data: Mapping[str, Any] = json.loads(Path(path).read_text())
    missing = [k for k in ("arch", "input_size", "version") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    return ModelSidecar(
        arch=str(data["arch"]),
        input_size=int(data["input_size"]),
        version=str(data["version"]),
        flip_average=bool(data.get("flip_average", False)),
        metrics=dict(data.get("metrics", {})),
    )


def write_sidecar(path: str | Path, sidecar: ModelSidecar) -> None:
    Path(path).write_text(json.dumps(asdict(sidecar), indent=2, sort_keys=True) + "\n")
