"""The ``matteflow`` command.

``matteflow matte`` runs in-process (no Redis); the other sub-commands belong to the module that implements
them and are imported only when used, so ``matteflow matte`` never loads Flask or Celery and ``matteflow web``
never loads the model.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .settings import Settings, SettingsError

if TYPE_CHECKING:
    import numpy as np

# Sub-commands implemented elsewhere: name -> (module, function, one-line help).
DELEGATED: dict[str, tuple[str, str, str]] = {
    "up": ("matteflow.service", "main", "run the whole service on this machine (Redis, worker, web)"),
    "web": ("matteflow.web.server", "main", "run the web intake service (HTML page + HTTP API)"),
    "worker": ("matteflow.workers.runner", "main", "run a Celery worker that processes images"),
    "exporter": ("matteflow.exporter", "main", "serve the queue metrics (one per deployment)"),
    "submit": ("matteflow.submit", "main", "send images to a MatteFlow server and download the ZIP"),
    "train": ("matteflow.training.cli", "train_main", "train the matting model"),
    "eval": ("matteflow.training.cli", "eval_main", "measure a model's quality (IoU, SAD, MSE)"),
}


def add_option_arguments(parser: argparse.ArgumentParser, model_specs: bool = False) -> None:
    """The matting options as flags; the same names as the HTTP form fields (dashes for underscores).

    ``model_specs``: ``--model`` also takes a model file spec (``onnx:<path>``, ...), for the in-process CLI.
    """
    from .core.cropping import CROP_MODES, MAX_CROP_MARGIN, MAX_OUTPUT_SIDE
    from .core.idsizes import ID_SIZES
    from .core.options import FORMATS, KEEP_CHOICES, PRESETS
    from .core.registry import MODEL_NAMES

    group = parser.add_argument_group("matting options (explicit options override the preset)")
    group.add_argument("--preset", choices=sorted(PRESETS), help="a named set of defaults")
    names = ", ".join(MODEL_NAMES)
    group.add_argument(
        "--model",
        metavar="NAME" + ("|SPEC" if model_specs else ""),
        help=f"model: {names} (default auto: the people model, or the general one where only it is sure of a "
        "subject; ensemble: both, combined where they agree: best quality, about 1.5x the CPU)"
        + ("; or a model file (onnx:<path>, torch:<path>) to run on every image" if model_specs else ""),
    )
    group.add_argument("--background", metavar="COLOUR", help="'transparent' (default) or '#rrggbb'")
    group.add_argument(
        "--background-image",
        dest="background_image_path",
        metavar="PATH",
        help="a photo to put behind every cut-out (scaled to cover it) instead of a colour",
    )
    group.add_argument("--format", choices=[*FORMATS, "jpg"], help="output format (default png)")
    group.add_argument("--alpha-threshold", type=int, metavar="0-255", help="alpha below this becomes 0")
    group.add_argument("--erode", type=int, metavar="PX", help="shrink the matte edge by this many pixels")
    group.add_argument("--feather", action=argparse.BooleanOptionalAction, default=None, help="soften the edge")
    group.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="solve the edge against the photo (closed-form matting): finer hair and fur, ~0.2-1 s more per image",
    )
    group.add_argument("--max-side", type=int, metavar="PX", help="downscale so the long side is at most PX")
    group.add_argument("--mask", action="store_true", default=None, help="also write <stem>_mask.png")
    group.add_argument("--keep", choices=KEEP_CHOICES, help="main: only the main person(s), clutter removed")
    group.add_argument(
        "--crop",
        choices=CROP_MODES,
        help="subject: trim the output to the subject; square: centre the subject on a square canvas",
    )
    group.add_argument(
        "--crop-margin",
        type=int,
        metavar="PCT",
        help=f"with --crop: room around the subject, in percent of its long side (0-{MAX_CROP_MARGIN}, default 0)",
    )
    group.add_argument(
        "--output-size",
        metavar="WxH",
        help=f"scale every result to exactly this (e.g. 1000x1000; 16-{MAX_OUTPUT_SIDE} px a side), the canvas "
        "widened around the subject (or the photo) to its shape",
    )
    group.add_argument("--id-size", choices=sorted(ID_SIZES), help="crop a real ID photo of this size (300 dpi)")
    group.add_argument("--max-kb", type=int, metavar="KB", help="largest output file (JPEG/WebP quality searched)")
    group.add_argument(
        "--sheet", action="store_true", default=None, help="ID photos: copies laid out on 4x6 in paper, cut lines"
    )
    group.add_argument(
        "--say",
        metavar="TEXT",
        help="what you want in words, 中文 or English (e.g. '蓝底二寸证件照'); explicit options win over it",
    )


def option_values(args: argparse.Namespace) -> dict[str, object]:
    from .core.options import OPTION_NAMES

    return {name: getattr(args, name) for name in OPTION_NAMES if getattr(args, name, None) is not None}


def is_model_file_spec(value: str) -> bool:
    """``onnx:<path>`` / ``torch:<path>`` / ``unet-random``: a network to load, not a model name."""
    return value.startswith(("onnx:", "torch:")) or value == "unet-random"


def _matte_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matteflow matte",
        description="Remove the background of images, in this process (no server needed).",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="redo images whose output already exists")
    parser.add_argument("--device", help="auto, cpu, cuda (env MATTEFLOW_DEVICE)")
    parser.add_argument("-j", "--jobs", type=int, default=0, help="images in flight at once (default: cores + 1)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="write per input: name, output, state, error, model that ran, confidence",
    )
    add_option_arguments(parser, model_specs=True)
    return parser


@dataclass(frozen=True)
class MatteTask:
    source: Path
    target: Path
    mask_target: Path | None


def iter_input_files(inputs: Sequence[Path]) -> Iterator[tuple[Path, Path]]:
    """Yield (file, its path relative to the output folder's root) for files and folders (recursively)."""
    from .core.imageio import IMAGE_SUFFIXES

    for item in inputs:
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                    yield path, path.relative_to(item)
        else:
            # An explicitly named file is tried whatever its suffix; a missing one is reported by the worker.
            yield item, Path(item.name)


def plan_tasks(inputs: Sequence[Path], outdir: Path, extension: str, mask: bool) -> list[MatteTask]:
    """Map inputs to outputs ``OUTDIR/<relative folder>/<stem>.<ext>``; name clashes get the source suffix."""
    tasks: list[MatteTask] = []
    taken: set[Path] = set()
    for source, relative in iter_input_files(inputs):
        stem = relative.with_suffix("")
        target = outdir / f"{stem}.{extension}"
        if target in taken:  # photo.jpg and photo.png in one folder
            stem = relative.with_name(f"{relative.stem}_{relative.suffix.lstrip('.').lower()}")
            target = outdir / f"{stem}.{extension}"
        taken.add(target)
        mask_target = outdir / f"{stem}_mask.png" if mask else None
        tasks.append(MatteTask(source, target, mask_target))
    return tasks


class MatteReport:
    """``--report``: one entry per input (name, output, state, error, model, confidence), in input order."""

    def __init__(self, path: Path, options: dict[str, object], tasks: Sequence[MatteTask]) -> None:
        self.path = path
        self.options = options
        self._order = [task.source for task in tasks]
        self._entries: dict[Path, dict[str, object]] = {}
        self._lock = threading.Lock()  # worker threads add entries

    def add(
        self,
        task: MatteTask,
        state: str,
        error: str | None = None,
        model: str | None = None,
        confidence: float | None = None,
    ) -> None:
        entry = {
            "name": str(task.source),
            "output": str(task.target),
            "state": state,
            "error": error,
            "model": model,
            "confidence": None if confidence is None else round(float(confidence), 4),
        }
        with self._lock:
            self._entries[task.source] = entry

    def write(self, write_atomic: Callable[[Path, bytes], None]) -> None:
        items = [self._entries[source] for source in self._order if source in self._entries]
        counts = {state: sum(1 for e in items if e["state"] == state) for state in ("done", "failed", "skipped")}
        body = {"options": self.options, **counts, "items": items}
        write_atomic(self.path, (json.dumps(body, indent=2) + "\n").encode())


def _read_backdrop(parser: argparse.ArgumentParser, path: str, max_pixels: int) -> np.ndarray:
    """The ``--background-image`` photo, decoded once for every image (upright RGB); a bad one is a usage
    error before any image is done."""
    from .core.errors import MattingError
    from .core.imageio import decode_image

    try:
        return decode_image(Path(path).read_bytes(), max_pixels).rgb
    except OSError as exc:
        parser.error(f"--background-image {path}: cannot read: {exc.strerror or exc}")
    except MattingError as exc:
        parser.error(f"--background-image {path}: {exc}")


def run_matte(argv: Sequence[str]) -> int:
    from tqdm import tqdm

    from .core.confidence import WORTH_A_LOOK_BELOW
    from .core.engine import MatteEngine
    from .core.errors import InvalidOptionError, MattingError, ModelError
    from .core.instructions import LlmConfig, resolve_options
    from .core.registry import ENSEMBLE, GENERAL, PEOPLE, ModelSet
    from .files import write_atomic

    parser = _matte_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    people_spec = settings.model
    if args.model is not None and is_model_file_spec(args.model):
        # A model file named on the command line is the network the user wants run: on every image.
        people_spec, args.model = args.model, PEOPLE
    llm = LlmConfig.from_values(settings.llm_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout_s)
    values = option_values(args)
    backdrop = None
    if args.background_image_path is not None:
        values["background_image"] = True
        backdrop = _read_backdrop(parser, args.background_image_path, settings.max_pixels)
    try:
        resolved = resolve_options(values, args.say, llm, settings.default_model)
    except InvalidOptionError as exc:
        parser.error(str(exc))
    options = resolved.options
    if resolved.interpretation is not None:
        # What the words became, on stderr so that scripts reading stdout are not disturbed.
        print(f"matteflow: {resolved.explanation(resolved.interpretation.language, question=False)}", file=sys.stderr)
    if args.jobs < 0:
        parser.error("--jobs must be 0 (automatic) or more")
    jobs = args.jobs or (os.cpu_count() or 1) + 1

    tasks = plan_tasks(args.inputs, args.output, options.extension, options.mask)
    pending = [
        t
        for t in tasks
        if args.overwrite or not (t.target.exists() and (t.mask_target is None or t.mask_target.exists()))
    ]
    skipped = len(tasks) - len(pending)
    if not tasks:
        print(f"matteflow: error: no images found in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 1
    # Several images in flight, each on one onnxruntime thread: decoding, inference and encoding of
    # different images overlap and every core stays busy.
    models = ModelSet.from_specs(
        people_spec, settings.general_model, args.device or settings.device, threads=1 if jobs > 1 else 0
    )
    try:
        # Load what every image needs now, so a missing model is one error, not one per image (ensemble
        # runs both); auto loads the general model on its first photo without a sure subject.
        for name in {ENSEMBLE: (PEOPLE, GENERAL), GENERAL: (GENERAL,)}.get(options.model, (PEOPLE,)):
            models.get(name)
    except ModelError as exc:
        print(f"matteflow: error: {exc}", file=sys.stderr)
        return 1
    engine = MatteEngine(models, max_pixels=settings.max_pixels)
    failures = 0
    unsure: list[Path] = []  # inputs whose cut-out the model was not sure of (appended from the pool's threads)
    report = MatteReport(args.report, options.to_dict(), tasks) if args.report else None
    if report is not None:
        todo = set(pending)
        for task in tasks:
            if task not in todo:
                report.add(task, "skipped")

    def process(task: MatteTask) -> None:
        try:
            data = task.source.read_bytes()
        except OSError as exc:
            raise MattingError(f"cannot read: {exc.strerror or exc}") from None
        result = engine.process_bytes(data, options, backdrop)
        for warning in result.warnings:
            progress.write(f"matteflow: warning: {task.source}: {warning}", file=sys.stderr)
        write_atomic(task.target, result.image)
        if task.mask_target is not None and result.mask is not None:
            write_atomic(task.mask_target, result.mask)
        if report is not None:
            report.add(task, "done", model=result.model, confidence=result.confidence)
        if result.confidence < WORTH_A_LOOK_BELOW:
            unsure.append(task.source)

    progress = tqdm(total=len(tasks), initial=skipped, unit="img", disable=args.quiet or None, file=sys.stderr)
    with progress, ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="matte") as pool:
        # Keep a bounded window in flight so thousands of files are never all in memory at once.
        in_flight: dict[Future[None], MatteTask] = {}
        queue = iter(pending)
        while True:
            while len(in_flight) < jobs * 2:
                task = next(queue, None)
                if task is None:
                    break
                in_flight[pool.submit(process, task)] = task
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                task = in_flight.pop(future)
                error = future.exception()
                if error is not None:
                    if not isinstance(error, (MattingError, OSError)):
                        raise error
                    failures += 1
                    progress.write(f"matteflow: error: {task.source}: {error}", file=sys.stderr)
                    if report is not None:
                        report.add(task, "failed", error=str(error))
                progress.update(1)
    if report is not None:
        report.write(write_atomic)
    if unsure:
        print(unsure_summary(sorted(unsure), len(pending) - failures, WORTH_A_LOOK_BELOW), file=sys.stderr)
    if failures:
        print(f"matteflow: {failures} of {len(tasks)} images failed", file=sys.stderr)
        return 1
    return 0


def unsure_summary(unsure: list[Path], done: int, below: float, named: int = 3) -> str:
    """One closing line for the cut-outs the model was not sure of: how many, the first few, what to do."""
    names = ", ".join(str(path) for path in unsure[:named]) + (", ..." if len(unsure) > named else "")
    return (
        f"matteflow: {len(unsure)} of {done} cut-outs may need a look (confidence below {below}): {names}. "
        "--report lists each with its confidence; --model general (objects) or --model people may do better there."
    )


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="matteflow", description="MatteFlow: background removal for photo pipelines.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("matte", help="remove the background of files or folders, in this process", add_help=False)
    for name, (_, _, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if argv and argv[0] == "matte":
            return run_matte(argv[1:])
        if argv and argv[0] in DELEGATED:
            module_name, function_name, _ = DELEGATED[argv[0]]
            function = getattr(importlib.import_module(module_name), function_name)
            return int(function(argv[1:]) or 0)
    except SettingsError as exc:  # a mistyped environment variable: one line, not a traceback
        print(f"matteflow: error: {exc}", file=sys.stderr)
        return 2
    parser = _top_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"matteflow {__version__}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
