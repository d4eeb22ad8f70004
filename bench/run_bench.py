"""CLI throughput: MatteFlow vs rembg (u2netp), side by side on the same 1080p JPEG folder.

Each tool runs as a whole process (model load included), JPEG in, transparent PNG out, as a user would run
it; the runs alternate (A B A B ...) so machine noise hits both alike. Prints images/s, the ratio and the
peak RSS of each. Never fails on time: it measures.

    .venv/bin/python bench/run_bench.py [--images 32] [--rounds 2]

rembg lives in its own virtual environment (.bench/rembg-venv, created on first use) and loads the u2netp
model offline from ../shared/teachers (U2NET_HOME).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
SHARED = ROOT.parent / "shared"
REMBG_VENV = BENCH_DIR / "rembg-venv"
SIZE = (1920, 1080)


def build_photo_folder(folder: Path, count: int) -> Path:
    """``count`` 1920x1080 JPEGs: people photos from ../shared/data (cover-cropped), or synthetic if absent."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.jpg"))) >= count:
        return folder
    sources = sorted((SHARED / "data" / "people").rglob("*.jpg"))
    rng = np.random.default_rng(0)
    for index in range(count):
        if sources:
            photo = Image.open(sources[(index * 7919) % len(sources)]).convert("RGB")
            photo = ImageOps.fit(photo, SIZE, method=Image.Resampling.BICUBIC)
        else:
            photo = Image.fromarray(rng.integers(0, 255, (SIZE[1] // 8, SIZE[0] // 8, 3), dtype=np.uint8))
            photo = photo.resize(SIZE, Image.Resampling.BICUBIC)
        photo.save(folder / f"photo_{index:03d}.jpg", quality=90)
    return folder


def ensure_rembg() -> Path:
    binary = REMBG_VENV / "bin" / "rembg"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(REMBG_VENV)], check=True)
        subprocess.run([str(REMBG_VENV / "bin" / "pip"), "install", "-q", "rembg[cpu,cli]"], check=True)
    return binary


def timed_run(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Run a command to completion; (wall seconds, peak RSS in MiB, CPU seconds user + system).

    CPU seconds are the steadier figure on a shared machine: other jobs stretch the wall time of whichever
    tool they overlap, but barely change the work each tool does per image."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {stderr[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each tool")
    parser.add_argument("--skip-rembg", action="store_true")
    parser.add_argument(
        "--rembg-alpha-matting",
        action="store_true",
        help="also time rembg -a (its closed-form alpha matting), the counterpart of matteflow --refine",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="one more matteflow run with extra CLI arguments, e.g. 'in448=--model onnx:/tmp/m448/net.onnx'",
    )
    parser.add_argument(
        "--models",
        default="people,general",
        help="matteflow --model values to time besides the default run (auto), comma-separated; '' for none",
    )
    args = parser.parse_args(argv)

    photos = build_photo_folder(BENCH_DIR / "photos-1080p", args.images)
    count = len(list(photos.glob("*.jpg")))
    env = {**os.environ, "U2NET_HOME": str(SHARED / "teachers"), "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    matteflow = [str(ROOT / ".venv" / "bin" / "matteflow"), "matte", str(photos), "-q", "--overwrite", "-o"]
    tools: dict[str, list[str]] = {"matteflow": matteflow}
    for variant in args.variant:
        name, _, extra = variant.partition("=")
        # The variant's arguments go before -o, which must stay last (the output folder is appended).
        tools[f"matteflow-{name}"] = [*matteflow[:-1], *extra.split(), "-o"]
    for model in filter(None, args.models.split(",")):
        # The default run ("matteflow") is auto, the one the speed target compares with rembg.
        tools[f"matteflow-{model}"] = [*matteflow[:-1], "--model", model, "-o"]
    if not args.skip_rembg:
        tools["rembg-u2netp"] = [str(ensure_rembg()), "p", "-m", "u2netp", str(photos)]
        if args.rembg_alpha_matting:
            tools["rembg-u2netp-a"] = [str(ensure_rembg()), "p", "-m", "u2netp", "-a", str(photos)]

    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in tools}
    for round_index in range(args.rounds):
        for name, command in tools.items():
            out = BENCH_DIR / f"out-{name}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            seconds, rss, cpu = timed_run([*command, str(out)], env)
            produced = len(list(out.rglob("*.png")))
            if produced != count:
                raise RuntimeError(f"{name} wrote {produced} PNGs for {count} photos")
            results[name].append((seconds, rss, cpu))
            print(
                f"round {round_index + 1} {name:18s} {seconds:7.2f} s  {count / seconds:6.2f} img/s  "
                f"{cpu:7.1f} CPU s  {rss:7.0f} MiB",
                flush=True,
            )

    summary = {}
    print(f"\n{count} JPEGs {SIZE[0]}x{SIZE[1]} -> transparent PNG, whole process, {os.cpu_count()} cores")
    print(f"{'tool':18s} {'median s':>9s} {'img/s':>7s} {'CPU s/img':>10s} {'peak RSS MiB':>13s}")
    for name, runs in results.items():
        seconds = statistics.median(s for s, _, _ in runs)
        cpu_per_image = statistics.median(c for _, _, c in runs) / count
        rss = max(r for _, r, _ in runs)
        summary[name] = {
            "seconds": seconds,
            "images_per_s": count / seconds,
            "cpu_s_per_image": cpu_per_image,
            "peak_rss_mib": rss,
        }
        print(f"{name:18s} {seconds:9.2f} {count / seconds:7.2f} {cpu_per_image:10.3f} {rss:13.0f}")
    for baseline in [n for n in results if n.startswith("rembg")]:
        rembg = summary[baseline]
        suffix = baseline.removeprefix("rembg-u2netp").replace("-", "_")  # "" or "_a" (alpha matting)
        for name in [n for n in results if n.startswith("matteflow")]:
            ratio = summary[name]["images_per_s"] / rembg["images_per_s"]
            cpu_ratio = rembg["cpu_s_per_image"] / summary[name]["cpu_s_per_image"]
            summary[f"ratio_{name}_over_rembg{suffix}"] = ratio
            print(f"ratio {name} / {baseline}: {ratio:.2f}x by wall time, {cpu_ratio:.2f}x by CPU time")
    (BENCH_DIR / "cli_bench.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
