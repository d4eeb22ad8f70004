"""The instruction table: loaded once, its exact-match share printed at the end of the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

CASES_PATH = Path(__file__).with_name("cases.jsonl")
# Filled by test_table.py: (instruction, exact match?) for the summary line.
TABLE_RESULTS: list[tuple[str, bool]] = []


def load_cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CASES_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TABLE_RESULTS:
        return
    exact = sum(1 for _, ok in TABLE_RESULTS if ok)
    share = 100.0 * exact / len(TABLE_RESULTS)
    terminalreporter.write_line(
        f"instruction table ({CASES_PATH.name}): {exact}/{len(TABLE_RESULTS)} exact matches ({share:.1f} %)"
    )


@pytest.fixture(scope="session")
def cases() -> list[dict[str, Any]]:
    return load_cases()
