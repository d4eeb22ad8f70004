"""A small Dockerfile reader for the lint tests: instructions with continuations joined, ARG defaults
substituted into FROM, stages split. Enough for our two files; not a general parser."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_VARIABLE = re.compile(r"\$\{(\w+)(?::-[^}]*)?\}|\$(\w+)")


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    value: str  # the rest, continuations joined
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.value.split("CMD", 1)[1] if self.keyword == "HEALTHCHECK" else self.value
        text = text.strip()
        return json.loads(text) if text.startswith("[") else None


@dataclass
class Stage:
    image: str  # after substituting ARG defaults
    alias: str | None
    instructions: list[Instruction] = field(default_factory=list)


def read_instructions(path: Path) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker too
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, value = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip(), start))
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def substitute(text: str, variables: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARG defaults declared before the first FROM (the ones FROM lines may use)."""
    args: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG" and "=" in ins.value:
            name, _, default = ins.value.partition("=")
            args[name.strip()] = default.strip().strip('"')
    return args


def stages(instructions: list[Instruction]) -> list[Stage]:
    args = global_args(instructions)
    result: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in shlex.split(ins.value) if not w.startswith("--platform")]
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(substitute(words[0], args), alias))
        elif result:
            result[-1].instructions.append(ins)
    return result


def image_tag(image: str) -> str | None:
    """The tag of ``name[:tag][@digest]`` (None when missing)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None
