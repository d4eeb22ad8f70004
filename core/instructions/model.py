"""What an interpreter returns: option values plus an account of every word of the instruction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Match:
    """Words of the instruction (``text``, at character ``start``) that set ``values`` (raw option values)."""

    text: str
    values: dict[str, Any]
    meaning: str
    start: int = 0


@dataclass
class Interpretation:
    """An instruction read into raw option values (what ``parse_options`` takes).

    ``matches`` say which words set which options; ``ignored`` are words understood to set nothing ("the",
    "把", "照片"); ``not_understood`` the words the interpreter could not use, never silently dropped;
    ``notes`` anything else worth saying (a clash, the LLM fallback). ``language`` is ``zh`` or ``en``.
    """

    instruction: str
    options: dict[str, Any]
    matches: list[Match] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interpreter: str = "offline"
    language: str = "en"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for match in data["matches"]:
            match.pop("start", None)
        return data
