"""The committed table of instructions (中文, English, mixed) and the options each must give.

Add a line to ``cases.jsonl`` for every phrasing a user reports; ``not_understood`` lists the words that must
be reported as not understood (none when absent).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from matteflow.core.instructions import interpret_offline

from .conftest import TABLE_RESULTS, load_cases

CASES = load_cases()
_HAN = re.compile(r"[\u4e00-\u9fff]")


def test_the_table_is_big_and_bilingual() -> None:
    chinese = [c for c in CASES if _HAN.search(c["say"]) and not re.search(r"[a-zA-Z]{3,}", c["say"])]
    english = [c for c in CASES if not _HAN.search(c["say"])]
    mixed = [c for c in CASES if c not in chinese and c not in english]
    assert len(CASES) >= 100
    assert len(chinese) >= 45 and len(english) >= 45 and len(mixed) >= 5
    assert sum(1 for c in CASES if c.get("not_understood")) >= 8
    assert len({c["say"] for c in CASES}) == len(CASES), "duplicate instructions in the table"


@pytest.mark.parametrize("case", CASES, ids=[c["say"] for c in CASES])
def test_instruction_gives_the_table_options(case: dict[str, Any]) -> None:
    result = interpret_offline(case["say"])
    exact = result.options == case["options"] and result.not_understood == case.get("not_understood", [])
    TABLE_RESULTS.append((case["say"], exact))
    assert result.options == case["options"]
    assert result.not_understood == case.get("not_understood", [])
