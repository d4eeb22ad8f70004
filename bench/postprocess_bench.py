"""Post-processing alone, numpy/OpenCV against torch, one 1080p image at a time. Prints numbers; never fails.

The network runs once per photo (its matte is reused), then each round times, alternated photo by photo so
machine noise hits both: today's path (``MatteEngine._render``) and the device path
(``DeviceMatteEngine._render``: working copies by OpenCV, torch post-processing, upload and download), plus
the torch stages one by one. Best-of-N is the figure to compare on a shared machine (noise only adds);
the median is printed beside it, and the best CPU time (all threads of the process: what an image costs a
loaded machine).

    .venv/bin/python bench/postprocess_bench.py --photos 5 --rounds 7           # torch's default threads
    .venv/bin/python bench/postprocess_bench.py --torch-threads 1               # one torch thread
    git show main:core/device_postprocess.py > /tmp/dp_main.py                 # before/after a change:
    .venv/bin/python bench/postprocess_bench.py --baseline /tmp/dp_main.py     # that version timed alongside
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_bench import build_photos  # noqa: E402


def load_baseline(path: Path) -> ModuleType:
    """A copy of core/device_postprocess.py (another commit's) as a module of the installed package."""
    name = "matteflow.core._baseline_device_postprocess"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--model", default="default")
    parser.add_argument("--preset", default=None, help="options preset (default: the plain cut-out)")
    parser.add_argument("--baseline", type=Path, help="another core/device_postprocess.py to time alongside")
    args = parser.parse_args()

    import torch

    from matteflow.core import device_postprocess as dp
    from matteflow.core.device_engine import DeviceMatteEngine, finish_settings
    from matteflow.core.engine import MatteEngine
    from matteflow.core.model import load_model
    from matteflow.core.options import parse_options

    # The decoded photos are read-only numpy arrays; torch only reads them here.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    options = parse_options(preset=args.preset) if args.preset else parse_options()
    model = load_model(args.model, "cpu", threads=1)
    numpy_engine = MatteEngine(model, max_pixels=60_000_000)
    torch_engine = DeviceMatteEngine(model, max_pixels=60_000_000, device="cpu")
    photos = sorted(build_photos(max(args.photos, 24)).glob("*.jpg"))[: args.photos]
    cases = []
    for path in photos:
        prepared = numpy_engine._decode(path.read_bytes(), options)
        (matte,) = numpy_engine._mattes([prepared], options.model)
        cases.append((prepared, matte.alpha_low))

    settings = finish_settings(options)

    def torch_stages(prepared, alpha_low) -> dict[str, float]:
        """The device path's steps one by one (same calls as render_batch, timed apart)."""
        times: dict[str, float] = {}
        started = time.perf_counter()
        guide, small = dp.shrink_photo(prepared.rgb)
        times["shrink (OpenCV)"] = time.perf_counter() - started
        with torch.inference_mode():
            image = torch.from_numpy(prepared.rgb[None]).permute(0, 3, 1, 2)
            guide_t = torch.from_numpy(guide[None]).permute(0, 3, 1, 2)
            small_t = torch.from_numpy(small[None]).permute(0, 3, 1, 2)
            low = torch.from_numpy(alpha_low[None, None])
            mark = time.perf_counter()
            alpha = dp.upsample_alpha_guided(low, image, guide=guide_t)
            alpha = dp.apply_alpha_threshold(alpha, settings.alpha_threshold)
            alpha = dp.erode_alpha(alpha, settings.erode)
            if settings.feather:
                alpha = dp.feather_alpha(alpha)
            times["guided upsample"] = time.perf_counter() - mark
            # render_batch's own (private) steps: the foreground is made in the RGBA buffer it returns.
            mark = time.perf_counter()
            alpha8 = dp.alpha_to_uint8(alpha)
            rgba = dp._foreground_rgbx(image, alpha, small_image=small_t, fourth=alpha8)
            times["foreground"] = time.perf_counter() - mark
            mark = time.perf_counter()
            if settings.background is None:
                dp._clear_transparent(rgba, alpha8).numpy()
            else:
                foreground = rgba[..., :3].permute(0, 3, 1, 2)
                dp.composite_over_color(foreground, alpha, settings.background).permute(0, 2, 3, 1).contiguous()
            times["compose"] = time.perf_counter() - mark
        return times

    def numpy_stages(prepared, alpha_low) -> dict[str, float]:
        from matteflow.core import postprocess as pp

        times: dict[str, float] = {}
        started = time.perf_counter()
        alpha = pp.upsample_alpha_guided(alpha_low, prepared.rgb)
        alpha = pp.apply_alpha_threshold(alpha, options.alpha_threshold)
        alpha = pp.erode_alpha(alpha, options.erode)
        if options.feather:
            alpha = pp.feather_alpha(alpha)
        times["guided upsample"] = time.perf_counter() - started
        mark = time.perf_counter()
        foreground = pp.finish_foreground(prepared.rgb, alpha)
        times["foreground"] = time.perf_counter() - mark
        mark = time.perf_counter()
        if options.background is None:
            pp.compose_rgba(foreground, alpha)
        else:
            pp.composite_over_color(foreground, alpha, options.background)
        times["compose"] = time.perf_counter() - mark
        return times

    runs: dict[str, Callable[..., object]] = {
        "numpy": lambda p, low: numpy_engine._render(p, low, options),
        "torch": lambda p, low: torch_engine._render(p, low, options),
    }
    if args.baseline:
        baseline = load_baseline(args.baseline)

        def baseline_render(prepared, alpha_low) -> object:
            """What DeviceMatteEngine._render does on the CPU, with the baseline's render_batch (less the
            engine's stacking copy and float matte: a few ms in the baseline's favour)."""
            guide, small = baseline.shrink_photo(prepared.rgb)
            nchw = [torch.from_numpy(a[None]).permute(0, 3, 1, 2) for a in (prepared.rgb, guide, small)]
            with torch.inference_mode():
                low = torch.from_numpy(alpha_low[None, None])
                pixels, alpha8 = baseline.render_batch(nchw[0], low, settings, guides=nchw[1], small_images=nchw[2])
                return pixels.numpy(), alpha8.numpy()

        runs["torch (baseline)"] = baseline_render
    totals: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}  # CPU seconds of all the process's threads
    stages: dict[str, dict[str, list[float]]] = {"numpy": {}, "torch": {}}
    for prepared, low in cases[:1]:  # warm-up
        for run in runs.values():
            run(prepared, low)
    for _ in range(args.rounds):
        for prepared, low in cases:
            for name, run in runs.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                run(prepared, low)
                totals[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)
            for name, staged in (("numpy", numpy_stages), ("torch", torch_stages)):
                for stage, value in staged(prepared, low).items():
                    stages[name].setdefault(stage, []).append(value)
    torch_engine.close()

    load = os.getloadavg()[0]
    print(
        f"post-processing alone, {len(cases)} photos 1920x1080 x {args.rounds} rounds, alternated; "
        f"torch {torch.__version__} on {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
        f"load average {load:.1f}; options {args.preset or 'default'}"
    )
    print(f"   {'ms per image':32s} {'best':>8s} {'median':>8s} {'CPU best':>9s}")
    for name in runs:
        best_ms, median_ms = min(totals[name]) * 1e3, statistics.median(totals[name]) * 1e3
        print(f"   {name + ' total (_render)':32s} {best_ms:8.1f} {median_ms:8.1f} {min(cpu[name]) * 1e3:9.1f}")
        for stage, values in stages.get(name, {}).items():
            print(f"     {stage:30s} {min(values) * 1e3:8.1f} {statistics.median(values) * 1e3:8.1f}")
    for name in [n for n in runs if n != "numpy"]:
        best = min(totals["numpy"]) / min(totals[name])
        median = statistics.median(totals["numpy"]) / statistics.median(totals[name])
        cpu_ratio = min(cpu["numpy"]) / min(cpu[name])
        print(f"   {name} vs numpy: {best:.2f}x best, {median:.2f}x median, {cpu_ratio:.2f}x CPU (>1 = torch faster)")


if __name__ == "__main__":
    main()
