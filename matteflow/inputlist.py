"""``--from FILE``: the inputs of ``matteflow matte`` and ``matteflow submit`` listed in a file (or read from
standard input with ``-``), one file, folder or image address per line, as a pipeline writes them
(``find ... | matteflow matte --from - -o out/``, a product feed's column of image URLs). Blank lines and
lines starting with ``#`` are skipped; relative paths are taken from the current directory, as on the
command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def read_input_list(name: str) -> list[str]:
    """The inputs listed in ``name`` (``-``: standard input), in order. Raises ``OSError`` when the file
    cannot be read and ``ValueError`` when it is not UTF-8 text."""
    text = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    try:
        lines = text.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not UTF-8 text (one file, folder or image address per line)") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def listed_inputs(names: list[str] | None) -> list[str]:
    """Every input of the ``--from`` files given (in the order given); a usage message on failure."""
    found: list[str] = []
    for name in names or []:
        try:
            found.extend(read_input_list(name))
        except OSError as exc:
            raise ValueError(f"--from {name}: cannot read: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ValueError(f"--from {exc}") from None
    return found


def add_input_list_argument(parser: argparse.ArgumentParser) -> None:
    """``--from FILE`` (repeatable), read by :func:`listed_inputs` from ``args.input_lists``."""
    parser.add_argument(
        "--from",
        dest="input_lists",
        action="append",
        metavar="FILE",
        help="also the inputs listed in FILE, one per line ('-': standard input; # comments)",
    )
