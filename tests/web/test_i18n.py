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
    "idempotency_key_in_progress",
    "idempotency_key_reused",
    "job_closed",
    "job_busy",
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


def test_every_warning_code_has_words() -> None:
    codes = {code for _, code in reasons._WARNINGS}
    for language in ("en", "zh"):
        missing = sorted(code for code in codes if f"warn.{code}" not in strings(language))
        assert not missing, (language, missing)


def test_the_engine_warnings_have_codes() -> None:
    """Pins core's warning sentences: a reworded one must fail here, not fall back to English on the page."""
    import numpy as np

    from matteflow.core.cropping import NO_SUBJECT_WARNING
    from matteflow.core.idphoto import locate_head
    from matteflow.core.imageio import encode_image_within
    from matteflow.core.postprocess import SHADOW_WARNING

    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    _, _, png = encode_image_within(noise, "png", 1024)
    _, _, jpeg = encode_image_within(noise, "jpeg", 1024)
    blob = np.zeros((200, 160), np.float32)
    blob[60:, 50:110] = 1.0  # a person-shaped blob without a face
    grey = np.full((200, 160, 3), 128, np.uint8)
    _, head = locate_head(grey, blob)
    _, nobody = locate_head(grey, np.zeros_like(blob))
    sentences = [NO_SUBJECT_WARNING, SHADOW_WARNING, png, jpeg, *head, *nobody]
    coded = reasons.warning_codes(sentences)
    expected = ["no_subject", "no_shadow", "png_too_big", "file_too_big", "no_face", "no_person"]
    assert [c["code"] for c in coded] == expected
    assert coded[2]["params"]["limit"] == 1 and coded[2]["params"]["kb"] > 1
    tilted = "the head is tilted by about 12 degrees: ID photos need it level"
    small = "the head is small in the photo: scaled up 2.5x, the ID photo will be soft"
    assert reasons.warning_codes([tilted, small, "something new"]) == [
        {"code": "head_tilted", "params": {"degrees": 12}},
        {"code": "small_head", "params": {"scale": "2.5"}},
        {"code": None, "params": {}},
    ]
