"""The post-processing of :mod:`matteflow.core.postprocess` in torch, batched over images of one size.

Guided-filter upsampling, alpha threshold, erosion, feathering, blur-fusion foreground colours and
compositing run on whatever device the tensors live on (the GPU worker's CUDA device, or the CPU), on a batch
of same-size images at once. Each function mirrors its numpy/OpenCV twin step by step (same working sizes,
same borders, same kernels), so the output pixels match the CPU path: the differences left are float
rounding and OpenCV's fixed-point 8-bit resizes. Measured on real photos (``tests/core/test_device_postprocess.py``
states and checks it): >= 99.99 % of matte pixels identical and all but 0.001 % within 1 level; visible colour
within 2 levels on all but 0.001 % of values, mean difference < 0.1 level.

On the CPU (the path that proves the GPU code equal, and a fallback) the kernels are chosen for speed there
as well: box sums by doubling or by running sums over whole rows rather than torch's strided ``cumsum``,
RGBx pixels handled as int32 words, fused multiply-adds; the same ops run on a GPU except where a comment
says otherwise.

Tensors: images are ``N x 3 x H x W`` uint8 RGB; alphas ``N x 1 x H x W`` float32 in [0, 1]. This module
imports torch: only the GPU worker (or a caller that asks for it) loads it; the CPU runtime never does.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .postprocess import _EPS, FOREGROUND_SIDE, GUIDE_SIDE

_REFLECT = "reflect"  # OpenCV BORDER_REFLECT: fedcba|abcdefgh|hgfedcb (edge pixel repeated)
_REFLECT_101 = "reflect101"  # OpenCV BORDER_REFLECT_101 (cv2.blur's default): gfedcb|abcdefgh|gfedcba


@functools.lru_cache(maxsize=256)
def _border_index_cpu(n: int, pad: int, mode: str) -> torch.Tensor:
    index = torch.arange(-pad, n + pad)
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * n if mode == _REFLECT else 2 * (n - 1)
    index = index % period
    if mode == _REFLECT:
        return torch.where(index >= n, period - 1 - index, index)
    return torch.where(index >= n, period - index, index)


def _border_index(n: int, pad: int, mode: str, device: torch.device) -> torch.Tensor:
    return _border_index_cpu(n, pad, mode).to(device, non_blocking=True)


def _pad(x: torch.Tensor, pad: int, dim: int, mode: str, lead_zero: bool = False) -> torch.Tensor:
    """Extend ``x`` by ``pad`` on both sides of ``dim`` as OpenCV's border ``mode`` does, for any size;
    ``lead_zero`` puts one more 0 in front (the running-sum form of a box filter wants it)."""
    n = x.shape[dim]
    if pad >= n:  # windows wider than the image: the general (slower) index form
        parts = [x.index_select(dim, _border_index(n, pad, mode, x.device))]
    else:
        skip = 1 if mode == _REFLECT_101 else 0
        parts = [x.narrow(dim, skip, pad).flip(dim), x, x.narrow(dim, n - pad - skip, pad).flip(dim)]
    if lead_zero:
        parts.insert(0, torch.zeros_like(x.narrow(dim, 0, 1)))
    return torch.cat(parts, dim) if len(parts) > 1 else parts[0]


# Windows up to this size are summed by doubling (a few vectorised adds, exact to float rounding of the
# window's own values); wider ones by running sums (cost independent of the width).
_DOUBLING_MAX_SIZE = 17


def _window_sums(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Sums of ``size`` consecutive values along ``dim`` (``n - size + 1`` of them), by doubling: sums of
    widths 1, 2, 4, ... and one add for each set bit of ``size``."""
    count = x.shape[dim] - size + 1
    parts: list[torch.Tensor] = []
    offset, width, level, remaining = 0, 1, x, size
    while True:
        if remaining & 1:
            parts.append(level.narrow(dim, offset, count))
            offset += width
        remaining >>= 1
        if not remaining:
            break
        length = level.shape[dim] - width
        level = level.narrow(dim, 0, length) + level.narrow(dim, width, length)
        width *= 2
    if len(parts) == 1:
        return parts[0].clone()
    out = parts[0] + parts[1]
    for part in parts[2:]:
        out += part
    return out


def _pad2d(x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """:func:`_pad` of both spatial dimensions, in one copy where torch's own reflect padding is OpenCV's."""
    if mode == _REFLECT_101 and pad < min(x.shape[2:]):
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return _pad(_pad(x, pad, 3, mode), pad, 2, mode)


def box_filter(x: torch.Tensor, radius: int, border: str = _REFLECT) -> torch.Tensor:
    """Mean over a (2r+1)^2 window of ``N x C x H x W`` float32, borders as OpenCV's ``border``.

    Small windows by doubling sums (within ~1e-7 of OpenCV's double-accumulated means); large ones by
    running sums, so the cost does not grow with the radius (float32 prefix sums over one row or column,
    at most a few thousand values in [0, 1], stay within ~1e-6). torch's ``cumsum`` is a scalar loop on
    the CPU, several vectorised adds cost less up to about 17 taps.
    """
    size = 2 * radius + 1
    if size <= _DOUBLING_MAX_SIZE:
        rows = _window_sums(_pad2d(x, radius, border), size, 3)
        return _window_sums(rows, size, 2).mul_(1.0 / (size * size))
    out = x
    for dim in (3, 2):
        n = out.shape[dim]
        if out.device.type == "cpu" and dim != out.dim() - 1:
            out = _running_window_sums(_pad(out, radius, dim, border), size, dim)
        else:
            sums = _pad(out, radius, dim, border, lead_zero=True).cumsum(dim)
            out = sums.narrow(dim, size, n) - sums.narrow(dim, 0, n)
    return out.mul_(1.0 / (size * size))


def _running_window_sums(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """:func:`_window_sums` by a running sum over whole slices along ``dim`` (for the CPU, ``dim`` not last).

    torch's CPU cumsum walks each column alone with a stride (scalar and cache-unfriendly: about 3x slower
    than along rows); adding whole rows in turn is vectorised. The running value is a window sum, never a
    prefix of the whole column, so float32 accumulation keeps it within ~1e-7 of the exact mean.
    """
    count = x.shape[dim] - size + 1
    out = torch.empty_like(x.narrow(dim, 0, count), memory_format=torch.contiguous_format)
    out.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, size).sum(dim, keepdim=True))
    # out[i] = out[i - 1] + x[i + size - 1] - x[i - 1]
    torch.sub(x.narrow(dim, size, count - 1), x.narrow(dim, 0, count - 1), out=out.narrow(dim, 1, count - 1))
    rows = out.unbind(dim)
    for previous, row in zip(rows[:-1], rows[1:], strict=True):
        row.add_(previous)
    return out


@functools.lru_cache(maxsize=64)
def _area_taps_cpu(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights (n_out x K) of OpenCV's INTER_AREA shrink along one axis."""
    scale = n_in / n_out
    taps = int(np.ceil(scale)) + 1
    index = np.zeros((n_out, taps), np.int64)
    weight = np.zeros((n_out, taps), np.float64)
    for out in range(n_out):
        start, end = out * scale, min(n_in, (out + 1) * scale)
        first = int(np.floor(start))
        for k in range(taps):
            src = first + k
            if src >= n_in:
                break
            cover = min(end, src + 1) - max(start, src)
            if cover > 1e-9:
                index[out, k], weight[out, k] = src, cover / (end - start)
    return torch.from_numpy(index), torch.from_numpy(weight.astype(np.float32))


def _area_axis(x: torch.Tensor, n_out: int, dim: int) -> torch.Tensor:
    n_in = x.shape[dim]
    if n_in == n_out:
        return x
    if n_in % n_out == 0:  # the common case (1920 -> 640, 1920 -> 960): plain block means
        factor = n_in // n_out
        kernel = (1, factor) if dim == 3 else (factor, 1)
        return F.avg_pool2d(x, kernel, stride=kernel)
    index, weight = _area_taps_cpu(n_in, n_out)
    index, weight = index.to(x.device), weight.to(x.device)
    view = [1] * x.dim()
    view[dim] = n_out
    out = None
    for k in range(index.shape[1]):
        term = x.index_select(dim, index[:, k]) * weight[:, k].reshape(view)
        out = term if out is None else out + term
    assert out is not None
    return out


def resize_area(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Shrink ``N x C x H x W`` float32 as ``cv2.resize(..., INTER_AREA)`` does (fractional coverage)."""
    n, channels, in_h, in_w = x.shape
    if (in_h, in_w) != (height, width) and in_h % height == 0 and in_w % width == 0:
        # Block means by adding strided views (vectorised): several times faster than avg_pool2d or a sum
        # over a short last dimension on the CPU.
        fy, fx = in_h // height, in_w // width
        blocks = x.reshape(n, channels, height, fy, in_w)
        rows = blocks[:, :, :, 0] + blocks[:, :, :, 1] if fy > 1 else blocks[:, :, :, 0].clone()
        for k in range(2, fy):
            rows += blocks[:, :, :, k]
        out = rows[..., 0::fx] + rows[..., 1::fx] if fx > 1 else rows
        for k in range(2, fx):
            out += rows[..., k::fx]
        return out.mul_(1.0 / (fy * fx))
    return _area_axis(_area_axis(x, width, 3), height, 2)


def resize_linear(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``cv2.resize(..., INTER_LINEAR)`` on float32 (half-pixel centres, no antialias)."""
    if x.shape[2:] == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


def resize_linear_uint8(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``cv2.resize(..., INTER_LINEAR)`` of N x C x H x W uint8 (OpenCV rounds in fixed point: +-1 level).

    On the CPU torch has a uint8 kernel for channels-last tensors (several times faster than going through
    float); elsewhere the float path, rounded back. Either way the result is channels last.
    """
    if x.device.type == "cpu":
        channels_last = x.contiguous(memory_format=torch.channels_last)
        return F.interpolate(channels_last, size=(height, width), mode="bilinear", align_corners=False)
    out = to_uint8_levels(resize_linear(x.float(), height, width)).to(torch.uint8)
    return out.contiguous(memory_format=torch.channels_last)


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """Round and saturate to 0..255 (as OpenCV's saturate_cast), kept as float32 levels."""
    return x.round().clamp_(0.0, 255.0)


def _working_size(height: int, width: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink_photo(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo's two working copies, made where it was decoded, exactly as the numpy path makes them
    (OpenCV INTER_AREA, uint8): (guide at ``GUIDE_SIDE``, foreground image at ``FOREGROUND_SIDE``), H x W x 3.

    Cheap on the CPU (a few ms per 1080p photo on a decode thread) and exact; the device then works only on
    what depends on the matte. Pass them to :func:`render_batch` as ``guides`` and ``small_images``.
    """
    height, width = rgb.shape[:2]
    shrunk = []
    for side in (GUIDE_SIDE, FOREGROUND_SIDE):
        work_h, work_w = _working_size(height, width, side)
        same = (work_h, work_w) == (height, width)
        shrunk.append(rgb if same else cv2.resize(rgb, (work_w, work_h), interpolation=cv2.INTER_AREA))
    return shrunk[0], shrunk[1]


def snap_alpha(alpha: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Clip to [0, 1] and snap what would round to 0 or 255 in 8 bits (see ``postprocess.snap_alpha``)."""
    # Below 0 is below the low snap and above 1 above the high one: the two snaps are the clip as well.
    low = alpha < 0.5 / 255.0
    alpha = alpha.masked_fill_(low, 0.0) if inplace else alpha.masked_fill(low, 0.0)
    return alpha.masked_fill_(alpha > 254.5 / 255.0, 1.0)


def upsample_alpha_guided(
    alpha_low: torch.Tensor,
    image: torch.Tensor,
    guide_side: int = GUIDE_SIDE,
    radius: int = 4,
    eps: float = 1e-3,
    guide: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batched :func:`matteflow.core.postprocess.upsample_alpha_guided`.

    ``alpha_low`` N x 1 x h x w float32 [0, 1]; ``image`` N x 3 x H x W uint8 full-size guide; ``guide``
    its shrink to ``guide_side`` (N x 3 x h' x w' uint8, :func:`shrink_photo`), else made here. Returns
    N x 1 x H x W float32 in [0, 1].
    """
    full_h, full_w = image.shape[2:]
    work_h, work_w = _working_size(full_h, full_w, guide_side)
    if guide is None:
        guide = resize_area(image.float(), work_h, work_w)
        if (work_h, work_w) != (full_h, full_w):
            guide = to_uint8_levels(guide)  # OpenCV's shrink of a uint8 image gives uint8
    # NCHW float whatever the layout it came in (an H x W x 3 photo permuted is channels last): mixing
    # layouts in one elementwise op takes torch's slow strided path.
    guide = guide.to(torch.float32, memory_format=torch.contiguous_format, copy=True).mul_(1.0 / 255.0)
    p = resize_linear(alpha_low.float(), work_h, work_w)

    # Every box filter of one pass in one call: I (3), p (1), I*p (3), the 6 products of I's channels.
    r, g, b = guide[:, 0:1], guide[:, 1:2], guide[:, 2:3]
    stacked = torch.cat([guide, p, guide * p, r * r, r * g, r * b, g * g, g * b, b * b], 1)
    means = box_filter(stacked, radius)
    mean_i, mean_p, mean_ip = means[:, 0:3], means[:, 3:4], means[:, 4:7]
    mr, mg, mb = mean_i[:, 0:1], mean_i[:, 1:2], mean_i[:, 2:3]
    cov_ip = mean_ip - mean_i * mean_p
    var_rr = means[:, 7:8] - mr * mr + eps
    var_rg = means[:, 8:9] - mr * mg
    var_rb = means[:, 9:10] - mr * mb
    var_gg = means[:, 10:11] - mg * mg + eps
    var_gb = means[:, 11:12] - mg * mb
    var_bb = means[:, 12:13] - mb * mb + eps
    inv_rr = var_gg * var_bb - var_gb * var_gb
    inv_rg = var_gb * var_rb - var_rg * var_bb
    inv_rb = var_rg * var_gb - var_gg * var_rb
    inv_gg = var_rr * var_bb - var_rb * var_rb
    inv_gb = var_rb * var_rg - var_rr * var_gb
    inv_bb = var_rr * var_gg - var_rg * var_rg
    det = var_rr * inv_rr + var_rg * inv_rg + var_rb * inv_rb
    cr, cg, cb = cov_ip[:, 0:1], cov_ip[:, 1:2], cov_ip[:, 2:3]
    a_r = (inv_rr * cr + inv_rg * cg + inv_rb * cb) / det
    a_g = (inv_rg * cr + inv_gg * cg + inv_gb * cb) / det
    a_b = (inv_rb * cr + inv_gb * cg + inv_bb * cb) / det
    b_coef = mean_p - (a_r * mr + a_g * mg + a_b * mb)
    coefs = box_filter(torch.cat([a_r, a_g, a_b, b_coef], 1), radius)
    if (work_h, work_w) == (full_h, full_w):
        alpha = (coefs[:, 0:3] * guide).sum(1, keepdim=True) + coefs[:, 3:4]
        return snap_alpha(alpha, inplace=True)
    # Full resolution: q = a . I + b with a, b upsampled (the fast guided filter), channel by channel from
    # the uint8 photo (no full-size float copy of it). The 1/255 of I goes into a at the working size
    # (bilinear upsampling is linear), so each channel is one fused multiply-add pass at full size.
    coefs[:, 0:3] *= 1.0 / 255.0
    coefs = resize_linear(coefs, full_h, full_w)
    alpha = torch.addcmul(coefs[:, 3:4], coefs[:, 0:1], image[:, 0:1])
    alpha.addcmul_(coefs[:, 1:2], image[:, 1:2])
    alpha.addcmul_(coefs[:, 2:3], image[:, 2:3])
    return snap_alpha(alpha, inplace=True)


def apply_alpha_threshold(alpha: torch.Tensor, threshold: int) -> torch.Tensor:
    """Alpha below ``threshold`` (0-255 scale) becomes 0."""
    if threshold <= 0:
        return alpha
    return alpha.masked_fill(alpha < threshold / 255.0, 0.0)


@functools.lru_cache(maxsize=64)
def _ellipse_rows(pixels: int) -> tuple[tuple[int, int], ...]:
    """(row offset, half width) of each row of OpenCV's elliptical structuring element of radius ``pixels``."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    rows = []
    for y in range(kernel.shape[0]):
        xs = np.flatnonzero(kernel[y])
        if xs.size:  # each row of an ellipse is one run centred on the middle column
            rows.append((y - pixels, int(pixels - xs[0])))
    return tuple(rows)


def erode_alpha(alpha: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grey-level erosion with OpenCV's elliptical element (2p+1 square); outside the image counts as +inf."""
    if pixels <= 0:
        return alpha
    rows = _ellipse_rows(pixels)
    # Min over each distinct row width first (max-pool of -alpha ignores the padding), then over the rows.
    widths = {half: -F.max_pool2d(-alpha, (1, 2 * half + 1), stride=1, padding=(0, half)) for _, half in rows}
    height = alpha.shape[2]
    out = None
    for offset, half in rows:
        row_min = widths[half]
        padded = F.pad(row_min, (0, 0, pixels, pixels), value=float("inf"))
        shifted = padded.narrow(2, pixels + offset, height)
        out = shifted if out is None else torch.minimum(out, shifted)
    assert out is not None
    return out


@functools.lru_cache(maxsize=64)
def _gaussian_taps(sigma: float) -> np.ndarray:
    size = int(round(sigma * 4 * 2 + 1)) | 1  # OpenCV's kernel size for float images when ksize is (0, 0)
    return cv2.getGaussianKernel(size, sigma, cv2.CV_64F)[:, 0].astype(np.float32)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    taps = torch.from_numpy(_gaussian_taps(sigma)).to(x.device)
    half = taps.numel() // 2
    channels = x.shape[1]
    # cuDNN may run float32 convolutions in TF32 (10-bit mantissa) on Ampere and later: not for a matte.
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
        out = _pad(x, half, 3, _REFLECT)
        out = F.conv2d(out, taps.reshape(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
        out = _pad(out, half, 2, _REFLECT)
        return F.conv2d(out, taps.reshape(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def feather_alpha(alpha: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Gaussian-soften the edge band only (see ``postprocess.feather_alpha``); sigma from the long side."""
    if sigma is None:
        sigma = max(1.0, max(alpha.shape[2:]) / 1000.0)
    blurred = _gaussian_blur(alpha, sigma)
    solid = (alpha >= 1.0) & (blurred > 0.999)
    clear = (alpha <= 0.0) & (blurred < 0.001)
    blurred = torch.where(solid, torch.ones_like(blurred), blurred)
    return torch.where(clear, torch.zeros_like(blurred), blurred)


def _blur_fusion_pass(
    image: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, alpha: torch.Tensor, radius: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, height, width = alpha.shape
    one_minus_a = 1.0 - alpha
    # alpha, F * alpha and B * (1 - alpha) written straight into one 7-channel buffer: one box filter call.
    stacked = alpha.new_empty((n, 7, height, width))
    stacked[:, 0:1] = alpha
    torch.mul(fg, alpha, out=stacked[:, 1:4])
    torch.mul(bg, one_minus_a, out=stacked[:, 4:7])
    blurred = box_filter(stacked, radius, _REFLECT_101)
    blurred_a, blurred_fg, blurred_bg = blurred[:, 0:1], blurred[:, 1:4], blurred[:, 4:7]
    blurred_fg /= blurred_a + _EPS
    blurred_bg /= (1.0 - blurred_a) + _EPS
    # fg = F~ + a (I - a F~ - (1 - a) B~), as fused multiply-adds
    residual = torch.addcmul(image, alpha, blurred_fg, value=-1.0)
    residual.addcmul_(one_minus_a, blurred_bg, value=-1.0)
    fg = torch.addcmul(blurred_fg, alpha, residual)
    return fg.clamp_(0.0, 1.0), blurred_bg


def estimate_foreground_blur_fusion(
    image: torch.Tensor,
    alpha: torch.Tensor,
    work_side: int = FOREGROUND_SIDE,
    radii: tuple[int, int] = (90, 6),
    small_image: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batched :func:`matteflow.core.postprocess.estimate_foreground_blur_fusion`.

    ``image`` N x 3 x H x W uint8, ``alpha`` N x 1 x H x W float32, ``small_image`` the photo's shrink to
    ``work_side`` (:func:`shrink_photo`), else made here. Returns N x 3 x H x W uint8 (a channels-last
    view), equal to ``image`` wherever alpha is 0 or 1.
    """
    return _foreground_rgbx(image, alpha, work_side, radii, small_image)[..., :3].permute(0, 3, 1, 2)


# The colour bytes of one RGBx pixel read as an int32 in the machine's byte order (0xFFFFFF00 is -256).
_RGB_BITS = 0x00FFFFFF if sys.byteorder == "little" else -256


def _as_int32(rgbx: torch.Tensor) -> torch.Tensor:
    """N x H x W x 4 uint8 -> N x H x W int32, one element per pixel (the same memory)."""
    return rgbx.view(torch.int32).squeeze(-1)


def _rgbx(image: torch.Tensor, fourth: torch.Tensor | None = None) -> torch.Tensor:
    """N x 3 x H x W (uint8, or float32 whole levels) -> N x H x W x 4 uint8, the fourth byte from ``fourth``
    (N x 1 x H x W uint8), else 0."""
    n, _, height, width = image.shape
    out = torch.empty((n, height, width, 4), dtype=torch.uint8, device=image.device)
    out[..., :3] = image.permute(0, 2, 3, 1)
    out[..., 3] = 0 if fourth is None else fourth[:, 0]
    return out


def _foreground_rgbx(
    image: torch.Tensor,
    alpha: torch.Tensor,
    work_side: int = FOREGROUND_SIDE,
    radii: tuple[int, int] = (90, 6),
    small_image: torch.Tensor | None = None,
    fourth: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`estimate_foreground_blur_fusion` as N x H x W x 4 uint8: colours, then ``fourth``'s byte.

    Pixels of four bytes let the soft band be chosen with whole-pixel int32 bit operations (a masked
    select of 3-byte pixels is several times slower on the CPU) and are what the RGBA encoder wants.
    """
    height, width = alpha.shape[2:]
    soft = (alpha > 0.0) & (alpha < 1.0)
    work_h, work_w = _working_size(height, width, work_side)
    scale = min(1.0, work_side / max(height, width))
    if small_image is None:
        small_image = resize_area(image.float(), work_h, work_w)
        if (work_h, work_w) != (height, width):
            small_image = to_uint8_levels(small_image)
    small_img = small_image.to(torch.float32, memory_format=torch.contiguous_format, copy=True).mul_(1.0 / 255.0)
    small_a = resize_area(alpha, work_h, work_w)
    fg, bg = small_img, small_img
    for radius in radii:
        fg, bg = _blur_fusion_pass(small_img, fg, bg, small_a, max(1, round(radius * scale)))
    estimate = _rgbx(fg.mul_(255.0).round_())  # fg is in [0, 1]: no saturation needed
    if (work_h, work_w) != (height, width):
        estimate = resize_linear_uint8(estimate.permute(0, 3, 1, 2), height, width).permute(0, 2, 3, 1)
    out = _rgbx(image, fourth)
    # out ^= (out ^ estimate) & mask, mask all colour bits where soft, 0 elsewhere: estimate's colour in the
    # soft band, the photo's elsewhere, the fourth byte kept.
    out32 = _as_int32(out)
    mask = soft[:, 0].to(torch.int32).mul_(_RGB_BITS)
    out32 ^= (out32 ^ _as_int32(estimate.contiguous())).bitwise_and_(mask)
    return out


def alpha_to_uint8(alpha: torch.Tensor) -> torch.Tensor:
    """float32 [0, 1] -> uint8 [0, 255], rounded and saturated."""
    return (alpha * 255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def compose_rgba(foreground: torch.Tensor, alpha8: torch.Tensor) -> torch.Tensor:
    """N x H x W x 4 (channels last) uint8 RGBA from foreground (N x 3 x H x W) and alpha (N x 1 x H x W
    uint8); colour under alpha 0 is 0."""
    return _clear_transparent(_rgbx(foreground, alpha8), alpha8)


def _clear_transparent(rgba: torch.Tensor, alpha8: torch.Tensor) -> torch.Tensor:
    """Zero the pixels (colour and alpha) of N x H x W x 4 ``rgba`` where ``alpha8`` is 0, in place."""
    _as_int32(rgba).masked_fill_(alpha8[:, 0] == 0, 0)
    return rgba


def composite_over_color(foreground: torch.Tensor, alpha: torch.Tensor, color: tuple[int, int, int]) -> torch.Tensor:
    """``F * a + C * (1 - a)`` as N x 3 x H x W uint8 (the weights' sum carries OpenCV blendLinear's 1e-5)."""
    colour = torch.tensor(color, dtype=torch.float32, device=foreground.device).reshape(1, 3, 1, 1)
    mixed = (foreground.float() * alpha + colour * (1.0 - alpha)) / (1.0 + 1e-5)
    return to_uint8_levels(mixed).to(torch.uint8)


@dataclass(frozen=True)
class FinishSettings:
    """The options that shape the finished pixels (a subset of ``MatteOptions``)."""

    alpha_threshold: int = 0
    erode: int = 0
    feather: bool = False
    background: tuple[int, int, int] | None = None


def render_batch(
    images: torch.Tensor,
    alpha_low: torch.Tensor,
    settings: FinishSettings,
    input_alpha: torch.Tensor | None = None,
    guides: torch.Tensor | None = None,
    small_images: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Everything after the network for a batch of same-size images, on their device.

    ``images`` N x 3 x H x W uint8; ``alpha_low`` N x 1 x h x w float32 (the network's alpha, padding cut
    off); ``input_alpha`` N x 1 x H x W uint8 or None (the inputs' own transparency, kept); ``guides`` and
    ``small_images`` the photos' working copies (:func:`shrink_photo`, N x 3 x h x w uint8) when the caller
    made them, else they are made here on the device. Returns the
    output pixels N x H x W x 4 (transparent) or x 3 uint8, channels last as the encoders want them, and
    the final matte N x H x W uint8.
    """
    alpha = upsample_alpha_guided(alpha_low, images, guide=guides)
    if input_alpha is not None:
        alpha = alpha * (input_alpha.float() / 255.0)
    alpha = apply_alpha_threshold(alpha, settings.alpha_threshold)
    alpha = erode_alpha(alpha, settings.erode)
    if settings.feather:
        alpha = feather_alpha(alpha)
    alpha8 = alpha_to_uint8(alpha)
    # Foreground colours and the matte in one N x H x W x 4 buffer: the RGBA output as it stands.
    rgba = _foreground_rgbx(images, alpha, small_image=small_images, fourth=alpha8)
    if settings.background is None:
        return _clear_transparent(rgba, alpha8), alpha8[:, 0]
    foreground = rgba[..., :3].permute(0, 3, 1, 2)
    pixels = composite_over_color(foreground, alpha, settings.background)
    return pixels.permute(0, 2, 3, 1).contiguous(), alpha8[:, 0]
