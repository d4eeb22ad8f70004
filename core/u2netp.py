"""U^2-Net-p (Qin et al. 2020, xuebinqin/U-2-Net, Apache-2.0) in torch: the shipped general model on a GPU.

The CPU runs the general model as ONNX through onnxruntime (``models/general-u2netp[-int8].onnx``). A GPU
worker's onnxruntime usually has no CUDA provider, and there the general model would run on the CPU beside a
GPU that waits (measured on an H200: 40 % of 1080p photos took it under ``auto``, and the worker did 15
images/s). This module is the same network in torch, so it runs on the GPU like the people model.

The layers follow the authors' ``model/u2net.py`` (RSU blocks of conv-BN-ReLU, U2NETP's widths) with each
batch norm folded into its convolution, as in the shipped ONNX file the weights come from
(``training/export_general.py --torch``, conv by conv in execution order, shapes and dilations checked).
:class:`GeneralMatting` adds what that ONNX graph adds around the network: ImageNet normalisation in front,
the fused output's sigmoid stretched to [0, 1] per image behind (``min_max``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_RANGE = 1e-6  # as the ONNX graph's floor: a flat output stays finite


class ConvReLU(nn.Module):
    """The authors' REBNCONV with its batch norm folded into the convolution."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


def _upsample_like(src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.interpolate(src, size=target.shape[2:], mode="bilinear", align_corners=False)


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class RSU(nn.Module):
    """A residual U-block of ``height`` levels (the authors' RSU7 ... RSU4): pooled encoder, dilated bottom,
    upsampled decoder, plus the input convolution's output. ``dilated`` is their RSU4F, the block for the small
    deep stages: dilations 1, 2, 4 ... instead of pooling and upsampling."""

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int, dilated: bool = False) -> None:
        super().__init__()
        levels = height - 1
        self.dilated = dilated

        def dilation(level: int) -> int:
            return 2**level if dilated else 1

        self.conv_in = ConvReLU(in_ch, out_ch)
        self.encoders = nn.ModuleList(
            [ConvReLU(out_ch if level == 0 else mid_ch, mid_ch, dilation(level)) for level in range(levels)]
        )
        self.bottom = ConvReLU(mid_ch, mid_ch, dilation=2**levels if dilated else 2)
        self.decoders = nn.ModuleList(
            [ConvReLU(mid_ch * 2, out_ch if level == 0 else mid_ch, dilation(level)) for level in range(levels)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(x)
        skips = []
        hx = x_in
        for level, encoder in enumerate(self.encoders):
            hx = encoder(hx if level == 0 or self.dilated else _pool(hx))
            skips.append(hx)
        hx = self.bottom(hx)
        # decoders[i] makes level i; the deepest runs first, each output upsampled to the next skip's size
        for level in range(len(self.decoders) - 1, -1, -1):
            hx = self.decoders[level](torch.cat((hx, skips[level]), 1))
            if level and not self.dilated:
                hx = _upsample_like(hx, skips[level - 1])
        return hx + x_in


class U2NetP(nn.Module):
    """U2NETP: six encoder stages, five decoder stages, six side outputs fused by a 1x1 convolution.
    Returns the fused output's logits (N x 1 x H x W); the side outputs only feed the fusion."""

    def __init__(self, in_ch: int = 3, out_ch: int = 1) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(
            [RSU(7, in_ch, 16, 64), RSU(6, 64, 16, 64), RSU(5, 64, 16, 64), RSU(4, 64, 16, 64)]
            + [RSU(4, 64, 16, 64, dilated=True), RSU(4, 64, 16, 64, dilated=True)]
        )
        self.decoders = nn.ModuleList(
            [RSU(7, 128, 16, 64), RSU(6, 128, 16, 64), RSU(5, 128, 16, 64), RSU(4, 128, 16, 64)]
            + [RSU(4, 128, 16, 64, dilated=True)]
        )
        self.sides = nn.ModuleList([nn.Conv2d(64, out_ch, 3, padding=1) for _ in range(6)])
        self.fuse = nn.Conv2d(6 * out_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        hx = x
        for stage, encoder in enumerate(self.encoders):
            hx = encoder(hx if stage == 0 else _pool(hx))
            skips.append(hx)
        decoded = [hx]  # stage 6's output, then decoder stages 5 ... 1
        for stage in range(4, -1, -1):
            hx = self.decoders[stage](torch.cat((_upsample_like(hx, skips[stage]), skips[stage]), 1))
            decoded.append(hx)
        # The authors' order: side1 on the last decoder's output ... side6 on stage 6's, each upsampled to side1.
        finest = self.sides[0](decoded[5])
        sides = [finest] + [_upsample_like(self.sides[i](decoded[5 - i]), finest) for i in range(1, 6)]
        return self.fuse(torch.cat(sides, 1))


class GeneralMatting(nn.Module):
    """MatteFlow's model interface around :class:`U2NetP`: N x 3 x H x W RGB in [0, 1] -> N x 1 x H x W alpha
    in [0, 1] (sigmoid, then stretched per image when ``min_max``), as ``models/general-u2netp.onnx``."""

    def __init__(self, network: U2NetP, min_max: bool = True) -> None:
        super().__init__()
        self.network = network
        self.min_max = min_max
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # The stretch in float32 even when the network runs in fp16: a low-contrast output's range is small.
        alpha = torch.sigmoid(self.network((image - self.mean) / self.std).float())
        if not self.min_max:
            return alpha
        lo = alpha.amin(dim=(1, 2, 3), keepdim=True)
        hi = alpha.amax(dim=(1, 2, 3), keepdim=True)
        return (alpha - lo) / (hi - lo).clamp_min(MIN_RANGE)


def conv_order(module: nn.Module) -> list[str]:
    """The state-dict prefixes of ``module``'s convolutions in the order a forward pass runs them (the order
    of the Conv nodes in a traced ONNX export of the same network)."""
    names = {conv: name for name, conv in module.named_modules() if isinstance(conv, nn.Conv2d)}
    order: list[str] = []
    hooks = [conv.register_forward_hook(lambda m, _i, _o: order.append(names[m])) for conv in names]
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 3, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def load_general(weights: Path, min_max: bool = True) -> GeneralMatting:
    """:class:`GeneralMatting` with the safetensors weights written by ``training/export_general.py``."""
    from safetensors.torch import load_file

    network = U2NetP()
    network.load_state_dict(load_file(str(weights)), strict=True)
    return GeneralMatting(network, min_max=min_max)
