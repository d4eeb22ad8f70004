"""The page's strings (web/static/i18n.js): every English key has its 简体中文 twin, and every error code the
server can send has words in both languages, so a 中文 page never falls back to the English message for them.
"""

from __future__ import annotations

import re
from pathlib import Path

from matteflow.web import errors, reasons

I18N = Path(errors.__file__).parent / "static" / "i18n.js"
# Codes the API raises by name (web/api.py, web/errors.py) that a page user can meet.
API_CODES = {
    "no_files",
    "no_file",
    "too_many_files",
    "payload_too_large",
    "job_not_found",
    "not_ready",
    "timeout",
    "unavailable",
    "internal_error",
    "item_failed",
    "nothing_to_rerun",
    "incompatible_result",
    "no_zip",
    "item_not_found",
    "url_not_allowed",
}


def strings(language: str) -> dict[str, str]:
    text = I18N.read_text(encoding="utf-8")
    block = re.search(rf"\n    {language}: \{{\n(.*?)\n    \}},", text, re.S)
    assert block, f"no {language} block in i18n.js"
    return dict(re.findall(r'^\s*"([^"]+)": "((?:[^"\\]|\\.)*)",?$', block.group(1), re.M))


def test_every_string_is_in_both_languages() -> None:
    en, zh = strings("en"), strings("zh")
    assert len(en) > 100
    assert set(en) == set(zh), set(en) ^ set(zh)
    for key, value in en.items():
        # The same {placeholders} on both sides, so no number goes missing in translation.
        assert set(re.findall(r"\{(\w+)\}", value)) == set(re.findall(r"\{(\w+)\}", zh[key])), key


def test_every_error_code_has_words() -> None:
    codes = {code for _, _, code in reasons._PATTERNS} | set(reasons._BY_CLASS.values())
    codes |= {code for _, code in errors.CORE_ERROR_STATUS.values()} | API_CODES
    for language in ("en", "zh"):
        missing = sorted(code for code in codes if f"err.{code}" not in strings(language))
        assert not missing, (language, missing)
