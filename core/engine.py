"""The matting pipeline for one image or a batch: decode -> network -> edge-aware upsampling -> finish -> encode.

The network runs at a reduced size (``model.input_size`` on the long side, or a square for networks trained on
squares) and the alpha is brought back to full resolution by a guided filter on the full-size photo, so hair
and edges follow the real image. Which network runs is the option ``model`` (``people``, ``general`` or
``auto``, see :mod:`matteflow.core.registry`); every result says which one it was.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import cropping, idphoto, postprocess
from .autoselect import people_model_is_sure
from .confidence import estimate_confidence
from .ensemble import ensemble_matte
from .errors import MattingError
from .idsizes import ID_DPI, ID_SIZES
from .imageio import (
    DecodedImage,
    check_memory_budget,
    decode_image,
    encode_image_with,
    encode_image_within,
    encode_mask,
    probe_image,
)
from .model import STRIDE, MattingModel
from .options import MatteOptions
from .refine import refine_edges
from .registry import AUTO, ENSEMBLE, GENERAL, PEOPLE, ModelSet

log = logging.getLogger(__name__)


@dataclass
class MatteResult:
    """An encoded result. ``timings`` has the seconds spent in decode, inference, postprocess, encode;
    ``confidence`` (in [0, 1]) how sure the network was of this matte (:mod:`matteflow.core.confidence`);
    ``model`` the name of the network that made it (``people`` or ``general``: ``auto`` resolved);
    ``warnings`` what the user should check (an ID photo without a face, a size limit not met)."""

    image: bytes
    mask: bytes | None
    extension: str
    media_type: str
    width: int
    height: int
    confidence: float
    model: str = PEOPLE
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Prepared:
    rgb: np.ndarray  # full-size (after max_side) H x W x 3 uint8
    input_alpha: np.ndarray | None
    timings: dict[str, float]
    # Network inputs by (input_size, resize): 3 x h x w float32 (h, w multiples of STRIDE) and the (h, w) of
    # the image inside it. Made once per model geometry (auto may need two).
    inputs: dict[tuple[int, str], tuple[np.ndarray, tuple[int, int]]] = field(default_factory=dict)

    def network_input(self, model: MattingModel) -> tuple[np.ndarray, tuple[int, int]]:
        """The network input for ``model``, at its input size."""
        key = (model.input_size, model.resize)
        if key not in self.inputs:
            self.inputs[key] = make_network_input(self.rgb, *key)
        return self.inputs[key]


def resize_to_max_side(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (never upscale) so the long side is at most ``max_side``; area interpolation."""
    height, width = rgb.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def make_network_input(
    rgb: np.ndarray, input_size: int, resize: str = "long-side"
) -> tuple[np.ndarray, tuple[int, int]]:
    """Resize so the long side is ``input_size`` and pad the short side up to a multiple of ``STRIDE``
    (``resize="long-side"``), or squeeze the whole photo into an ``input_size`` square (``"square"``).

    Returns a 3 x h x w float32 array in [0, 1] and the (h, w) of the unpadded content. Padding replicates
    the border so the network does not see an artificial edge.
    """
    height, width = rgb.shape[:2]
    if resize == "square":
        new_w = new_h = input_size
        scale = input_size / max(height, width)
    else:
        scale = input_size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
    pad_h, pad_w = -new_h % STRIDE, -new_w % STRIDE
    if pad_h or pad_w:
        small = cv2.copyMakeBorder(small, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
    tensor = small.astype(np.float32).transpose(2, 0, 1) * (1.0 / 255.0)
    return np.ascontiguousarray(tensor), (new_h, new_w)


class MatteEngine:
    """Runs the whole pipeline with a set of named models. Thread-safe: the CLI runs several images at once.

    ``models`` is a :class:`ModelSet` (``people`` and ``general``, loaded on first use) or one model, which then
    serves every name (and ``auto`` has nothing to choose).
    """

    # Most images in one network call (0: all of one input shape); a GPU engine bounds it by device memory.
    network_batch = 0

    def __init__(self, models: ModelSet | MattingModel, max_pixels: int, memory_budget_mb: int = 0) -> None:
        self.models = models if isinstance(models, ModelSet) else ModelSet.single(models)
        self.max_pixels = max_pixels
        # Per-image peak memory budget (0 = none), checked from the header before decoding: the worker's own
        # guard, whatever the intake that stored the image checked (docs/operations.md, "Memory budget").
        self.memory_budget_mb = memory_budget_mb

    @property
    def model(self) -> MattingModel:
        """The people model (the one model of engines built before named models)."""
        return self.models.get(PEOPLE)

    def _prepare(self, decoded: DecodedImage, options: MatteOptions, decode_s: float = 0.0) -> _Prepared:
        rgb = resize_to_max_side(decoded.rgb, options.max_side)
        input_alpha = decoded.alpha
        if input_alpha is not None and input_alpha.shape != rgb.shape[:2]:
            input_alpha = cv2.resize(input_alpha, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
        return _Prepared(rgb, input_alpha, {"decode": decode_s})

    def _decode(self, data: bytes, options: MatteOptions) -> _Prepared:
        start = time.perf_counter()
        if self.memory_budget_mb:
            check_memory_budget(probe_image(data, self.max_pixels), options.max_side, self.memory_budget_mb)
        decoded = decode_image(data, self.max_pixels, max_side=options.max_side)
        return self._prepare(decoded, options, time.perf_counter() - start)

    def _render(
        self, prepared: _Prepared, alpha_low: np.ndarray, options: MatteOptions, backdrop: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Full-size matte + post-processing -> (output pixels RGB or RGBA uint8, alpha H x W float32, warnings).

        ``alpha_low`` is the network's matte cropped to the image content (any size: it is resized to the
        photo, so a squeezed square input comes back to the photo's aspect ratio here). With ``id_size`` the
        output is the ID frame (cropped and scaled around the head), with ``crop`` the canvas around the
        subject and with ``output_size`` that size, not the photo's. ``backdrop`` (H' x W' x 3 uint8) is the
        photo to composite over when ``options.background_image`` asks for one."""
        alpha = postprocess.upsample_alpha_guided(alpha_low, prepared.rgb)
        if options.refine:
            alpha = refine_edges(alpha, prepared.rgb)
        if prepared.input_alpha is not None:
            # An input that is already partly transparent keeps its transparency (after any refinement, which
            # solves from colours and would not know that a transparent pixel's colour means nothing).
            alpha *= prepared.input_alpha.astype(np.float32) / 255.0
        alpha = postprocess.apply_alpha_threshold(alpha, options.alpha_threshold)
        if options.keep == "main":
            alpha = postprocess.keep_main_subject(alpha)
        alpha = postprocess.erode_alpha(alpha, options.erode)
        if options.feather:
            alpha = postprocess.feather_alpha(alpha)
        foreground = postprocess.finish_foreground(prepared.rgb, alpha)
        warnings: list[str] = []
        if options.id_size is not None:
            size = ID_SIZES[options.id_size]
            foreground, alpha, warnings = idphoto.make_id_photo(prepared.rgb, foreground, alpha, size)
        # A subject the photo's bottom edge cuts (a half-body portrait, a product shot too close) stands on no
        # floor: a shadow under its cut would look like a shelf, so it gets none, and the caller is told.
        grounded = options.shadow and not postprocess.touches_bottom(alpha)
        foreground, alpha, frame_warnings = cropping.frame_cutout(
            foreground, alpha, options.crop, options.crop_margin, options.output_size
        )
        warnings += frame_warnings
        if grounded:
            foreground, alpha = postprocess.add_drop_shadow(foreground, alpha)
        elif options.shadow:
            warnings.append(postprocess.SHADOW_WARNING)
        if options.background_image:
            if backdrop is None:
                raise ValueError("background_image is set but no backdrop image was given")
            pixels = postprocess.composite_over_image(foreground, alpha, backdrop)
        elif options.background is None:
            return postprocess.compose_rgba(foreground, alpha), alpha, warnings
        else:
            pixels = postprocess.composite_over_color(foreground, alpha, options.background)
        if options.sheet:
            pixels, _ = idphoto.layout_print_sheet(pixels)
            alpha = np.ones(pixels.shape[:2], np.float32)  # the paper is opaque everywhere
        return pixels, alpha, warnings

    def _finish(
        self, prepared: _Prepared, matte: _Matte, options: MatteOptions, backdrop: np.ndarray | None = None
    ) -> MatteResult:
        start = time.perf_counter()
        pixels, alpha, warnings = self._render(prepared, matte.alpha_low, options, backdrop)
        mid = time.perf_counter()
        dpi = ID_DPI if options.id_size is not None else None
        if options.max_kb is not None:
            image, _, warning = encode_image_within(pixels, options.format, options.max_kb * 1024, dpi)
            warnings += [warning] if warning else []
        else:
            image = encode_image_with(pixels, options.format, dpi=dpi)
        mask = encode_mask(postprocess.alpha_to_uint8(alpha)) if options.mask else None
        timings = {**prepared.timings, "postprocess": mid - start, "encode": time.perf_counter() - mid}
        height, width = alpha.shape
        confidence = matte.confidence
        return MatteResult(
            image,
            mask,
            options.extension,
            options.media_type,
            width,
            height,
            confidence,
            matte.model,
            timings,
            warnings,
        )

    def _run_model(self, name: str, prepared: list[_Prepared]) -> list[np.ndarray]:
        """The named network's matte of each image (cropped to its content), batching images whose network
        inputs have the same shape into one call; the inference time is shared out over the images."""
        model = self.models.get(name)
        inputs = [item.network_input(model) for item in prepared]
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for position, (tensor, _) in enumerate(inputs):
            groups[tensor.shape].append(position)
        mattes: list[np.ndarray | None] = [None] * len(prepared)
        size = self.network_batch or len(prepared)
        chunks = [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]
        for positions in chunks:
            start = time.perf_counter()
            alphas = model.predict(np.stack([inputs[p][0] for p in positions]))
            share = (time.perf_counter() - start) / len(positions)
            for position, alpha in zip(positions, alphas, strict=True):
                h, w = inputs[position][1]
                mattes[position] = alpha[:h, :w]
                timings = prepared[position].timings
                timings["inference"] = timings.get("inference", 0.0) + share
        return [m for m in mattes if m is not None]

    def _mattes(self, prepared: list[_Prepared], requested: str) -> list[_Matte]:
        """Run the requested model (``people``, ``general``, ``auto`` or ``ensemble``) over images of one
        request."""
        if requested == GENERAL:
            return [_Matte(alpha, GENERAL) for alpha in self._run_model(GENERAL, prepared)]
        people = [_Matte(alpha, PEOPLE) for alpha in self._run_model(PEOPLE, prepared)]
        if requested not in (AUTO, ENSEMBLE) or self.models.is_single:
            return people
        # ensemble: the general model on every photo; auto: only on those the people model is not sure of.
        # Either way the two are combined where they agree on the subject, else one is chosen (core.ensemble).
        if requested == ENSEMBLE:
            second = list(range(len(people)))
        else:
            second = [i for i, matte in enumerate(people) if not people_model_is_sure(matte.alpha_low)]
        if second:
            # At the general model's own input size (320): better through the pipeline on both dev splits than
            # the 256 of 2026-12-02, whose less decisive mattes left a clear product to the people model.
            general = self._run_model(GENERAL, [prepared[i] for i in second])
            for i, alpha in zip(second, general, strict=True):
                people[i] = _Matte(*ensemble_matte(people[i].alpha_low, alpha))
        return people

    def process_array(
        self,
        rgb: np.ndarray,
        options: MatteOptions,
        input_alpha: np.ndarray | None = None,
        backdrop: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cut out an ``H x W x 3`` uint8 RGB array (optionally with its own H x W uint8 alpha).

        Returns the output pixels (H x W x 4 RGBA when the background is transparent, else H x W x 3 RGB,
        uint8; ``max_side`` applied) and the final matte (H x W uint8). No encoding.
        """
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 uint8 RGB array, got {rgb.shape} {rgb.dtype}")
        prepared = self._prepare(DecodedImage(np.ascontiguousarray(rgb), input_alpha), options)
        (matte,) = self._mattes([prepared], options.model)
        pixels, alpha, warnings = self._render(prepared, matte.alpha_low, options, backdrop)
        for warning in warnings:
            log.warning("%s", warning)
        return pixels, postprocess.alpha_to_uint8(alpha)

    def process_bytes(self, data: bytes, options: MatteOptions, backdrop: np.ndarray | None = None) -> MatteResult:
        """Cut out one encoded image (over ``backdrop``, an H x W x 3 uint8 photo, when
        ``options.background_image``). Raises :class:`InvalidImageError` / :class:`ImageTooLargeError`."""
        prepared = self._decode(data, options)
        (matte,) = self._mattes([prepared], options.model)
        return self._finish(prepared, matte, options, backdrop)

    def predict_alpha(self, rgb: np.ndarray, model: str = PEOPLE) -> np.ndarray:
        """The full-resolution matte of an ``H x W x 3`` uint8 RGB image: H x W float32 in [0, 1].

        No threshold/erosion/feathering: the raw quality the evaluation measures.
        """
        (matte,) = self._mattes([_Prepared(rgb, None, {})], model)
        return postprocess.upsample_alpha_guided(matte.alpha_low, rgb)

    def process_many(
        self, datas: list[bytes], options: MatteOptions, backdrop: np.ndarray | None = None
    ) -> list[MatteResult | MattingError]:
        """Cut out several images (each over ``backdrop`` when ``options.background_image``), batching each
        network call over images of the same input shape.

        Each entry of the result is a :class:`MatteResult` or the :class:`MattingError` that image raised;
        one bad image never costs the others their result. Batching pays off on a GPU.
        """
        outcomes: list[MatteResult | MattingError | None] = [None] * len(datas)
        prepared: dict[int, _Prepared] = {}
        for index, data in enumerate(datas):
            try:
                prepared[index] = self._decode(data, options)
            except MattingError as exc:
                outcomes[index] = exc
        indices = list(prepared)
        mattes = self._mattes([prepared[i] for i in indices], options.model) if indices else []
        for index, matte in zip(indices, mattes, strict=True):
            try:
                outcomes[index] = self._finish(prepared[index], matte, options, backdrop)
            except MattingError as exc:
                outcomes[index] = exc
        missing = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if missing:  # never silently shift results onto the wrong images
            raise RuntimeError(f"no outcome for images {missing}")
        return [outcome for outcome in outcomes if outcome is not None]


@dataclass
class _Matte:
    """A network's matte of one image, cropped to the image content, and the name of that network."""

    alpha_low: np.ndarray
    model: str
    # What the confidence reads: the matte itself, or for an ensemble the mean of its members (see
    # core.ensemble.ensemble_matte).
    evidence: np.ndarray | None = None

    @property
    def confidence(self) -> float:
        return estimate_confidence(self.alpha_low if self.evidence is None else self.evidence)
