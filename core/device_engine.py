"""The matting pipeline of a GPU worker: a batch of images decoded in parallel, the network and every stage
after it run on the device in batches of same-size images, the results encoded in a pool of processes.

:class:`DeviceMatteEngine` is a :class:`~matteflow.core.engine.MatteEngine` (same results, same per-image
errors) whose ``process_many`` keeps the device busy:

- decoding on a thread pool (Pillow and OpenCV release the GIL), each image's failure its own;
- the network batched over images of one padded input shape (as the base engine does);
- the photo's two small working copies (guide, foreground) shrunk by OpenCV on the decode threads, exactly
  as the numpy path makes them;
- guided upsampling, threshold, erosion, feathering, foreground colours and compositing in torch
  (:mod:`matteflow.core.device_postprocess`) over images of one full size, uploaded from pinned memory
  with asynchronous copies, at most ``max_batch`` at a time;
- encoding in an :class:`~matteflow.core.encode_pool.EncodePool` when one is given (GPU workers), else in
  the calling thread.

This module imports torch; the CPU runtime (ONNX model, numpy post-processing) never loads it.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from . import device_postprocess
from .encode_pool import EncodePool, encode_result
from .engine import MatteEngine, MatteResult, _Prepared
from .errors import MattingError
from .model import MattingModel
from .options import MatteOptions
from .registry import ModelSet

Shrinks = tuple[np.ndarray, np.ndarray]  # a photo's guide and foreground working copies (shrink_photo)


def finish_settings(options: MatteOptions) -> device_postprocess.FinishSettings:
    return device_postprocess.FinishSettings(
        alpha_threshold=options.alpha_threshold,
        erode=options.erode,
        feather=options.feather,
        background=options.background,
    )


def needs_numpy_path(options: MatteOptions) -> bool:
    """Options only the numpy engine implements (issue 16: keep=main, ID photo framing and print sheets,
    file-size limits with their warnings; crops to the subject, output sizes, backdrop photos; edge refinement,
    a sparse solve on the CPU; drop shadows): those images take :class:`MatteEngine`'s path, same results."""
    framed = options.id_size is not None or options.sheet or options.crop != "none" or options.output_size is not None
    cpu_only = options.max_kb is not None or options.background_image or options.refine or options.shadow
    return options.keep != "all" or cpu_only or framed


class DeviceMatteEngine(MatteEngine):
    """A :class:`MatteEngine` whose post-processing runs in torch on ``device`` (default: the model's).

    ``decode_threads`` (0 = one per core) decode a batch in parallel; ``encoder`` encodes it (None: in the
    calling thread); ``max_batch`` bounds how many full-size images are on the device at once.
    Thread-safe, like the base engine.
    """

    def __init__(
        self,
        models: ModelSet | MattingModel,
        max_pixels: int,
        memory_budget_mb: int = 0,
        device: str | None = None,
        decode_threads: int = 0,
        encoder: EncodePool | None = None,
        max_batch: int = 8,
    ) -> None:
        super().__init__(models, max_pixels, memory_budget_mb)
        # The people model's device: the first network of every default request (the general one follows it
        # where its backend can).
        self.device = torch.device(device or self.model.device)
        self.encoder = encoder
        self.max_batch = max(1, max_batch)
        self.network_batch = self.max_batch
        self._pinned = self.device.type == "cuda"
        threads = decode_threads if decode_threads > 0 else max(1, os.cpu_count() or 1)
        self._decoder = ThreadPoolExecutor(threads, thread_name_prefix="matteflow-decode")

    # -- device transfers ----------------------------------------------------------------------------------

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        """Host array -> device tensor; from pinned memory and asynchronous on CUDA."""
        host = torch.from_numpy(array)
        if self._pinned:
            return host.pin_memory().to(self.device, non_blocking=True)
        return host.to(self.device)

    def _download(self, tensor: torch.Tensor) -> np.ndarray:
        if not self._pinned:
            return tensor.numpy()
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return host.numpy()

    def _upload_images(self, arrays: list[np.ndarray]) -> torch.Tensor:
        """Same-size H x W x 3 uint8 arrays -> N x 3 x H x W uint8 on the device."""
        return self._upload(np.stack(arrays)).permute(0, 3, 1, 2)

    def render_group(
        self,
        items: list[_Prepared],
        alpha_lows: list[np.ndarray],
        options: MatteOptions,
        shrinks: list[Shrinks] | None = None,
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Post-process same-size images on the device: (output pixels H x W x 3|4, mattes H x W) uint8.

        ``shrinks``: each photo's working copies (:func:`device_postprocess.shrink_photo`) when the decode
        threads made them; else they are made here."""
        if shrinks is None:
            shrinks = [device_postprocess.shrink_photo(p.rgb) for p in items]
        pixels_out: list[np.ndarray] = []
        alphas_out: list[np.ndarray] = []
        for start in range(0, len(items), self.max_batch):
            part = items[start : start + self.max_batch]
            lows = alpha_lows[start : start + self.max_batch]
            part_shrinks = shrinks[start : start + self.max_batch]
            with torch.inference_mode():
                images = self._upload_images([p.rgb for p in part])
                guides = self._upload_images([guide for guide, _ in part_shrinks])
                smalls = self._upload_images([small for _, small in part_shrinks])
                low = np.stack(lows)  # each already cropped to its image (same model, same size: same shape)
                low_t = self._upload(np.ascontiguousarray(low, dtype=np.float32)[:, None])
                input_alpha = None
                if any(p.input_alpha is not None for p in part):
                    stacked = np.stack([p.input_alpha if p.input_alpha is not None else _opaque(p) for p in part])
                    input_alpha = self._upload(stacked[:, None])
                pixels, alpha8 = device_postprocess.render_batch(
                    images, low_t, finish_settings(options), input_alpha, guides=guides, small_images=smalls
                )
                pixels_host, alpha_host = self._download(pixels), self._download(alpha8)
            pixels_out.extend(pixels_host)
            alphas_out.extend(alpha_host)
        return pixels_out, alphas_out

    # -- one image (process_bytes / process_array of the base class) --------------------------------------

    def _render(
        self, prepared: _Prepared, alpha_low: np.ndarray, options: MatteOptions, backdrop: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if needs_numpy_path(options):
            return super()._render(prepared, alpha_low, options, backdrop)
        (pixels,), (alpha8,) = self.render_group([prepared], [alpha_low], options)
        # The alpha round-trips exactly through alpha_to_uint8.
        return pixels, np.multiply(alpha8, np.float32(1.0 / 255.0), dtype=np.float32), []

    # -- a batch ------------------------------------------------------------------------------------------

    def _decode_or_error(self, data: bytes, options: MatteOptions) -> tuple[_Prepared, Shrinks] | MattingError:
        """Decode and make the working copies (a decode thread's work); a bad image gives its error."""
        try:
            prepared = self._decode(data, options)
        except MattingError as exc:
            return exc
        started = time.perf_counter()
        shrinks = device_postprocess.shrink_photo(prepared.rgb)
        prepared.timings["decode"] += time.perf_counter() - started
        return prepared, shrinks

    def process_many(
        self, datas: list[bytes], options: MatteOptions, backdrop: np.ndarray | None = None
    ) -> list[MatteResult | MattingError]:
        """Like :meth:`MatteEngine.process_many` (one outcome per input, in order; a bad image fails
        alone), with decoding, post-processing and encoding of the batch done in parallel/on the device."""
        if needs_numpy_path(options):
            return MatteEngine.process_many(self, datas, options, backdrop)
        outcomes: list[MatteResult | MattingError | None] = [None] * len(datas)
        prepared: dict[int, _Prepared] = {}
        shrinks: dict[int, Shrinks] = {}
        decoded = self._decoder.map(lambda data: self._decode_or_error(data, options), datas)
        for index, item in enumerate(decoded):
            if isinstance(item, MattingError):
                outcomes[index] = item
            else:
                prepared[index], shrinks[index] = item

        # The network(s), batched by model and input shape (auto: people first, general for the unsure).
        order_in = sorted(prepared)
        mattes = dict(zip(order_in, self._mattes([prepared[i] for i in order_in], options.model), strict=True))
        alpha_lows = {i: matte.alpha_low for i, matte in mattes.items()}

        rendered: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, item in prepared.items():
            # Same photo size and same matte shape (auto may mix the two models' mattes in one batch).
            by_size[(item.rgb.shape, alpha_lows[index].shape)].append(index)
        for indices in by_size.values():
            started = time.perf_counter()
            pixels, alphas = self.render_group(
                [prepared[i] for i in indices], [alpha_lows[i] for i in indices], options
            )
            share = (time.perf_counter() - started) / len(indices)
            for i, pixel, alpha in zip(indices, pixels, alphas, strict=True):
                prepared[i].timings["postprocess"] = share
                rendered[i] = (pixel, alpha)

        order = sorted(rendered)
        jobs = [(rendered[i][0], options.format, rendered[i][1] if options.mask else None) for i in order]
        if self.encoder is not None and len(jobs) > 1:
            encoded = self.encoder.encode_many(jobs)
        else:
            encoded = [encode_result(*job) for job in jobs]
        for i, (image, mask, encode_s) in zip(order, encoded, strict=True):
            item = prepared[i]
            height, width = rendered[i][1].shape
            timings = {**item.timings, "encode": encode_s}
            confidence = mattes[i].confidence
            outcomes[i] = MatteResult(
                image,
                mask,
                options.extension,
                options.media_type,
                width,
                height,
                confidence,
                model=mattes[i].model,
                timings=timings,
            )

        missing = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if missing:  # never silently shift results onto the wrong images
            raise RuntimeError(f"no outcome for images {missing}")
        return [outcome for outcome in outcomes if outcome is not None]

    def close(self) -> None:
        """Stop the decode threads and the encoder processes."""
        self._decoder.shutdown(wait=True)
        if self.encoder is not None:
            self.encoder.close()


def _opaque(prepared: _Prepared) -> np.ndarray:
    return np.full(prepared.rgb.shape[:2], 255, np.uint8)
