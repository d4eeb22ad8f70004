"""An instruction plus explicit options -> one validated option object and its explanation.

Explicit options win over what the instruction says, and the answer lists every such override.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidOptionError, shown
from ..options import MatteOptions, parse_options
from ..registry import DEFAULT_MODEL
from .describe import describe_value, describe_values
from .llm import LlmConfig, LlmError, ask_llm
from .model import Interpretation
from .offline import interpret_offline

MAX_INSTRUCTION_CHARS = 500


def interpret(instruction: str, llm: LlmConfig | None = None) -> Interpretation:
    """The offline reading; when it left words not understood and an LLM is configured, the LLM's reading
    (validated) instead. Any LLM failure keeps the offline reading and says why in ``notes``."""
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise InvalidOptionError(f"instruction is {len(instruction)} characters; the limit is {MAX_INSTRUCTION_CHARS}")
    offline = interpret_offline(instruction)
    if llm is None or not offline.not_understood:
        return offline
    try:
        answer = ask_llm(instruction, llm)
    except LlmError as exc:
        offline.notes.append(f"LLM not used ({exc}): the offline reading stands")
        return offline
    answer.language = offline.language
    answer.notes.append(
        f"the offline interpreter did not understand {', '.join(offline.not_understood)}: read by the LLM"
    )
    return answer


@dataclass
class Resolved:
    """The options that will run, how the instruction was read, and which explicit options overrode it."""

    options: MatteOptions
    interpretation: Interpretation | None = None
    overridden: list[dict[str, Any]] = field(default_factory=list)

    def explanation(self, lang: str = "en", question: bool = True) -> str:
        return explain(self, lang, question)

    def to_dict(self, lang: str | None = None) -> dict[str, Any]:
        """JSON for the API: options + how the instruction was read + the explanation in ``lang``."""
        interp = self.interpretation
        lang = lang or (interp.language if interp else "en")
        data: dict[str, Any] = {"options": self.options.to_dict(), "overridden": self.overridden}
        if interp is not None:
            data.update(
                {
                    "instruction": interp.instruction,
                    "interpreter": interp.interpreter,
                    "from_instruction": interp.options,
                    "mapped": [
                        {"text": m.text, "sets": m.values, "meaning": describe_values(m.values, lang)}
                        for m in interp.matches
                    ],
                    "ignored": interp.ignored,
                    "not_understood": interp.not_understood,
                    "notes": interp.notes,
                }
            )
        data["explanation"] = explain(self, lang)
        return data


def _same(name: str, a: Any, b: Any) -> bool:
    try:
        return getattr(parse_options({name: a}), name) == getattr(parse_options({name: b}), name)
    except InvalidOptionError:
        return str(a).strip().lower() == str(b).strip().lower()


def resolve_options(
    explicit: Mapping[str, Any] | None = None,
    instruction: str | None = None,
    llm: LlmConfig | None = None,
    default_model: str = DEFAULT_MODEL,
) -> Resolved:
    """Validate ``explicit`` option values together with what ``instruction`` asks for (explicit ones win).
    ``default_model`` applies when neither names a model (see :func:`parse_options`).

    Raises :class:`InvalidOptionError` for unknown names, bad values, or an instruction whose options
    contradict each other (the message names the instruction).
    """
    given = {k: v for k, v in (explicit or {}).items() if v is not None and str(v).strip() != ""}
    text = (instruction or "").strip()
    if not text:
        return Resolved(parse_options(given, default_model=default_model))
    interp = interpret(text, llm)
    overridden = [
        {"option": name, "instruction": value, "explicit": given[name]}
        for name, value in interp.options.items()
        if name in given and not _same(name, value, given[name])
    ]
    try:
        options = parse_options({**interp.options, **given}, default_model=default_model)
    except InvalidOptionError as exc:
        raise InvalidOptionError(f"the instruction {shown(text)} gives options that do not fit: {exc}") from None
    return Resolved(options, interp, overridden)


# The notes the interpreters write, in 中文 for the explanation (anything else is shown as written).
_NOTES_ZH: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^no photo size named: .*"), "未指定尺寸：照片保持原尺寸（说“一寸”“二寸”“35x45mm”或“2x2in”即可裁切）"),
    (re.compile(r"^(\S+) px left out: .*"), r"未采用 \1 像素：证件照尺寸已决定输出大小（35x45mm、2x2in 等）"),
    (re.compile(r"^(\w+): '(.*)' \((.*)\) replaces an earlier (.*)$"), r"“\2”（\3）覆盖了之前的 \1 \4"),
    (re.compile(r"^LLM not used \((.*)\): the offline reading stands$"), r"未使用 LLM（\1）：采用离线解读"),
    (
        re.compile(r"^the offline interpreter did not understand (.*): read by the LLM$"),
        r"离线解读未理解 \1：改由 LLM 解读",
    ),
)


def _note_zh(note: str) -> str:
    for pattern, replacement in _NOTES_ZH:
        if pattern.match(note):
            return pattern.sub(replacement, note)
    return note


def explain(resolved: Resolved, lang: str = "en", question: bool = True) -> str:
    """One paragraph for a person: what was understood, ignored, not understood, overridden; then (with
    ``question``) "Confirm?"."""
    interp = resolved.interpretation
    zh = lang == "zh"
    sep, stop = ("；", "。") if zh else ("; ", ". ")
    parts: list[str] = []
    if interp is None:
        return ""
    if interp.matches:
        items = sep.join(f"{m.text} → {describe_values(m.values, lang)}" for m in interp.matches if m.values)
        parts.append(("已识别：" if zh else "Understood: ") + items)
    else:
        parts.append("没有识别出任何选项" if zh else "No option was recognised")
    if interp.not_understood:
        words = "、".join(interp.not_understood) if zh else ", ".join(f"'{w}'" for w in interp.not_understood)
        parts.append(("未能理解：" if zh else "Not understood: ") + words)
    if interp.ignored:
        words = "、".join(interp.ignored) if zh else ", ".join(interp.ignored)
        parts.append(("忽略（不影响选项）：" if zh else "Ignored (no option): ") + words)
    for item in resolved.overridden:
        name = item["option"]
        if zh:
            parts.append(
                f"明确给出的选项优先：{describe_value(name, item['explicit'], lang)}（指令为 {item['instruction']}）"
            )
        else:
            parts.append(
                f"Your explicit {name}={item['explicit']} wins over {item['instruction']} from the instruction"
            )
    parts.extend(_note_zh(note) if zh else note for note in interp.notes)
    if interp.interpreter == "llm":
        parts.append("由 LLM 解读" if zh else "read by the LLM")
    text = stop.join(p.rstrip("。. ") for p in parts) + stop.strip()
    if question:
        text += (" " if not zh else "") + ("是否确认？" if zh else "Confirm?")
    return text
