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
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .inputlist import add_input_list_argument
from .settings import Settings, SettingsError, usable_cpus
from .urls import is_url

if TYPE_CHECKING:
    import numpy as np

    from .watch import FolderWatch

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
    group.add_argument(
        "--shadow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a soft floor shadow under the subject (catalogue style); none where the photo's edge cuts it",
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
    parser.add_argument(
        "inputs",
        nargs="*",
        type=input_source,
        metavar="INPUT",
        help="image files, folders, or http(s) addresses of images (read by this process)",
    )
    add_input_list_argument(parser)
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="redo images whose output already exists")
    parser.add_argument(
        "--watch",
        action="store_true",
        help="a hot folder: after the images there, keep cutting out images that appear in (or are rewritten "
        "in) the input folders, once they have stopped changing; Ctrl-C stops",
    )
    parser.add_argument("--device", help="auto, cpu, cuda (env MATTEFLOW_DEVICE)")
    parser.add_argument(
        "-j", "--jobs", type=int, default=0, help="images in flight at once (default: one per usable core)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="write per input: name, output, state, error, model that ran, confidence",
    )
    add_option_arguments(parser, model_specs=True)
    return parser


# An input: a file or folder, or the web address of an image (a str that starts with http:// or https://).
Source = Path | str


def input_source(text: str) -> Source:
    """A command-line input as given: an image's web address stays a string (a Path would fold its ``//``);
    a malformed address is a usage error."""
    if not is_url(text):
        return Path(text)
    from .core.errors import InvalidOptionError
    from .fetch import MAX_URL_CHARS
    from .urls import split_http_url

    try:
        split_http_url(text, "an input address", MAX_URL_CHARS)
    except InvalidOptionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _listed_sources(parser: argparse.ArgumentParser, lists: list[str] | None) -> list[Source]:
    """The inputs of the ``--from`` files, read as command-line inputs are (a bad line is a usage error)."""
    from .inputlist import listed_inputs

    try:
        listed = listed_inputs(lists)
        return [input_source(line) for line in listed]
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))


# ``-o`` naming an image file (and not an existing folder): the one input's cut-out is written there, in the
# format its suffix says (as rembg's ``i``), instead of into a folder of that name.
OUTPUT_FILE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


def _output_file(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path | None:
    """The output file ``-o`` names, with ``args.format`` set from its suffix; None when it names a folder."""
    from .core.options import FORMAT_ALIASES

    suffix_format = OUTPUT_FILE_FORMATS.get(args.output.suffix.lower())
    if suffix_format is None or args.output.is_dir():
        return None
    one_input = len(args.inputs) == 1 and not (isinstance(args.inputs[0], Path) and args.inputs[0].is_dir())
    if args.watch or not one_input:
        parser.error(
            f"-o {args.output} names an image file: give exactly one input image, or name a folder for several"
        )
    asked = FORMAT_ALIASES.get(args.format, args.format) if args.format else None
    if asked is not None and asked != suffix_format:
        parser.error(f"--format {args.format} does not match the output file {args.output}")
    args.format = suffix_format
    return args.output


@dataclass(frozen=True)
class MatteTask:
    source: Source
    target: Path
    mask_target: Path | None


def iter_input_files(inputs: Sequence[Source]) -> Iterator[tuple[Source, Path]]:
    """Yield (file or address, its path relative to the output folder's root) for files, folders
    (recursively) and images' web addresses (named as the address's last part)."""
    from .core.imageio import is_image_name
    from .fetch import ImageUrl

    for item in inputs:
        if isinstance(item, str):
            yield item, Path(ImageUrl(item).name)
        elif item.is_dir():
            for path in sorted(item.rglob("*")):
                if path.is_file() and is_image_name(path):
                    yield path, path.relative_to(item)
        else:
            # An explicitly named file is tried whatever its suffix; a missing one is reported by the worker.
            yield item, Path(item.name)


class TaskNamer:
    """Map inputs to outputs ``OUTDIR/<relative folder>/<stem>.<ext>``, each source always to the same output;
    a name clash (photo.jpg and photo.png in one folder) gives the later one its source suffix."""

    def __init__(self, outdir: Path, extension: str, mask: bool) -> None:
        self.outdir, self.extension, self.mask = outdir, extension, mask
        self._tasks: dict[Path, MatteTask] = {}
        self._taken: set[Path] = set()

    def task_for(self, source: Source, relative: Path) -> MatteTask:
        if source in self._tasks:
            return self._tasks[source]
        stem = relative.with_suffix("")
        target = self.outdir / f"{stem}.{self.extension}"
        if target in self._taken:
            stem = relative.with_name(f"{relative.stem}_{relative.suffix.lstrip('.').lower()}")
            target = self.outdir / f"{stem}.{self.extension}"
        self._taken.add(target)
        task = MatteTask(source, target, self.outdir / f"{stem}_mask.png" if self.mask else None)
        self._tasks[source] = task
        return task


def is_done(task: MatteTask, newer_than_source: bool = False) -> bool:
    """Its outputs exist (and, with ``newer_than_source``, were written after the source last changed)."""
    outputs = [task.target] + ([task.mask_target] if task.mask_target is not None else [])
    try:
        written = min(path.stat().st_mtime for path in outputs)
        if not newer_than_source or is_url(task.source):
            return True
        return written >= Path(task.source).stat().st_mtime
    except OSError:
        return False


class MatteReport:
    """``--report``: one entry per input (name, output, state, error, model, confidence), in input order."""

    def __init__(self, path: Path, options: dict[str, object], tasks: Sequence[MatteTask]) -> None:
        self.path = path
        self.options = options
        self._order = [task.source for task in tasks]
        self._known = set(self._order)
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
            if task.source not in self._known:  # one that appeared in a watched folder
                self._known.add(task.source)
                self._order.append(task.source)
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
    import cv2
    from tqdm import tqdm

    from .core.confidence import WORTH_A_LOOK_BELOW
    from .core.engine import MatteEngine
    from .core.errors import InvalidOptionError, MattingError, ModelError
    from .core.instructions import LlmConfig, resolve_options
    from .core.registry import ENSEMBLE, GENERAL, PEOPLE, ModelSet
    from .files import write_atomic

    parser = _matte_parser()
    args = parser.parse_args(argv)
    args.inputs = [*args.inputs, *_listed_sources(parser, args.input_lists)]
    if not args.inputs:
        if args.input_lists:
            print(f"matteflow: error: no inputs listed in --from {', '.join(args.input_lists)}", file=sys.stderr)
            return 1
        parser.error("give at least one INPUT (a file, folder or image address) or --from FILE")
    output_file = _output_file(parser, args)
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
    # One image per core: each image's decode, network and encode keep one core busy (cores + 1 measured 3 %
    # slower once OpenCV stopped using its own threads: bench/README.md, section 1).
    jobs = args.jobs or usable_cpus()

    folders = [path for path in args.inputs if isinstance(path, Path) and path.is_dir()]
    if args.watch and not folders:
        parser.error("--watch needs an input folder to watch")
    namer = TaskNamer(args.output, options.extension, options.mask)
    watch = _start_watch(folders, args.output) if args.watch else None
    tasks = [namer.task_for(source, relative) for source, relative in iter_input_files(args.inputs)]
    if output_file is not None:  # the file named is written, whatever is there (as the user asked)
        mask_file = output_file.with_name(f"{output_file.stem}_mask.png") if options.mask else None
        tasks = [MatteTask(args.inputs[0], output_file, mask_file)]
    if watch is not None:
        tasks = [t for t in tasks if is_url(t.source) or not is_inside(Path(t.source), args.output)]
    # In a hot folder an input rewritten since its output was made is done again.
    overwrite = args.overwrite or output_file is not None
    pending = [t for t in tasks if overwrite or not is_done(t, newer_than_source=watch is not None)]
    skipped = len(tasks) - len(pending)
    if watch is not None:
        # One still being copied in when the run starts waits until it has settled, like any arrival.
        copying = {t for t in pending if not is_url(t.source) and watch.is_changing(Path(t.source))}
        pending = [t for t in pending if t not in copying]
        tasks = [t for t in tasks if t not in copying]
    if not tasks and watch is None:
        print(f"matteflow: error: no images found in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 1
    # Several images in flight, each on one onnxruntime thread: decoding, inference and encoding of
    # different images overlap and every core stays busy. OpenCV's own thread pool then only adds hand-offs
    # between the images' threads (bench/README.md, section 1), so OpenCV runs each call on its caller's thread.
    threads = 1 if jobs > 1 else 0  # per image, for onnxruntime and OpenCV alike (0: their own default)
    if threads:
        cv2.setNumThreads(threads)
    models = ModelSet.from_specs(people_spec, settings.general_model, args.device or settings.device, threads=threads)
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
    unsure: list[Source] = []  # inputs whose cut-out the model was not sure of (appended from the pool's threads)
    report = MatteReport(args.report, options.to_dict(), tasks) if args.report else None
    if report is not None:
        todo = set(pending)
        for task in tasks:
            if task not in todo:
                report.add(task, "skipped")

    def process(task: MatteTask) -> None:
        data = read_source(task.source, settings)
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
    stopping = _stop_on_signals() if watch is not None else threading.Event()
    with progress, ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="matte") as pool, watch or nullcontext():
        # Keep a bounded window in flight so thousands of files are never all in memory at once.
        in_flight: dict[Future[None], MatteTask] = {}
        queue = deque(pending)
        started = 0
        while True:
            if watch is not None and not stopping.is_set():
                arrived = _arrived_tasks(watch, folders, namer, args.overwrite)
                progress.total += len(arrived)
                queue.extend(arrived)
            while len(in_flight) < jobs * 2 and queue and not stopping.is_set():
                task = queue.popleft()
                in_flight[pool.submit(process, task)] = task
                started += 1
            if not in_flight:
                if watch is None or stopping.is_set():
                    break
                stopping.wait(0.2)  # an empty hot folder: look for arrivals again shortly
                continue
            done, _ = wait(in_flight, timeout=0.2 if watch is not None else None, return_when=FIRST_COMPLETED)
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
    if queue and stopping.is_set():
        print(f"matteflow: stopped; {len(queue)} images not started are left for the next run", file=sys.stderr)
    if report is not None:
        report.write(write_atomic)
    if unsure:
        print(unsure_summary(sorted(unsure, key=str), started - failures, WORTH_A_LOOK_BELOW), file=sys.stderr)
    if failures:
        print(f"matteflow: {failures} of {skipped + started} images failed", file=sys.stderr)
        return 1
    return 0


def read_source(source: Source, settings: Settings) -> bytes:
    """An input's bytes: a file read, or an image's web address fetched. On the user's own machine every
    address they name is theirs to read (a local server included), within the usual size and time limits."""
    from .core.errors import MattingError

    if not is_url(source):
        try:
            return Path(source).read_bytes()
        except OSError as exc:
            raise MattingError(f"cannot read: {exc.strerror or exc}") from None
    from urllib.parse import urlsplit

    from .fetch import FetchRefused, ImageFetchError, fetch_image

    host = urlsplit(str(source)).hostname or ""  # checked when the command line was read (input_source)
    try:
        _, body = fetch_image(str(source), settings.replace(fetch_hosts=f"{host},*"))
    except (FetchRefused, ImageFetchError) as exc:
        raise MattingError(str(exc)) from None
    with body:
        return body.read()


def is_inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _start_watch(folders: list[Path], outdir: Path) -> FolderWatch:
    """The hot folders' watcher, set up before they are listed, so an image dropped in between is not missed.
    An output folder inside an input folder is not watched for arrivals: its own results would come back."""
    from .watch import FolderWatch

    return FolderWatch(folders, ignore=[outdir]).start()


def _arrived_tasks(watch: FolderWatch, folders: list[Path], namer: TaskNamer, overwrite: bool) -> list[MatteTask]:
    """Tasks for the images that settled in the watched folders since the last look and need (re)doing."""
    arrived = []
    for path in watch.settled():
        folder = next((f for f in folders if is_inside(path, f)), None)
        if folder is None:
            continue
        task = namer.task_for(path, path.resolve().relative_to(folder.resolve()))
        if overwrite or not is_done(task, newer_than_source=True):
            arrived.append(task)
    return arrived


def _stop_on_signals() -> threading.Event:
    """Ctrl-C (or SIGTERM) ends a hot folder cleanly: images in flight are finished, the report written."""
    stopping = threading.Event()

    first: list[float] = []

    def stop(signum: int, frame: object) -> None:
        # A second Ctrl-C stops at once; one delivered twice (to a process group and forwarded) does not.
        if first and time.monotonic() - first[0] > 0.5:
            raise KeyboardInterrupt
        if not first:
            first.append(time.monotonic())
            stopping.set()
            print("matteflow: stopping after the images in flight (Ctrl-C again to stop now)", file=sys.stderr)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return stopping


def unsure_summary(unsure: list[Source], done: int, below: float, named: int = 3) -> str:
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
