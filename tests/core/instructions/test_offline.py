"""The offline interpreter's rules beyond the table: accounting for every word, explicit options winning,
contradictions and limits reported, explanations in both languages."""

from __future__ import annotations

import re

import pytest

from matteflow.core.errors import InvalidOptionError
from matteflow.core.instructions import MAX_INSTRUCTION_CHARS, interpret_offline, resolve_options
from matteflow.core.options import PRESETS, parse_options


@pytest.mark.parametrize(
    "say",
    ["把这张照片换成蓝底证件照，谢谢", "remove the clutter, keep only the person please", "蓝底 passport photo xyz"],
)
def test_every_word_is_mapped_ignored_or_not_understood(say: str) -> None:
    result = interpret_offline(say)
    accounted = " ".join([m.text for m in result.matches] + result.ignored + result.not_understood)
    words = re.findall(r"[a-z]+|[\u4e00-\u9fff]", say.lower())
    for word in words:
        assert word in accounted, f"{word!r} of {say!r} was dropped silently"


def test_every_option_the_table_gives_is_valid() -> None:
    from .conftest import load_cases

    for case in load_cases():
        parse_options(case["options"])  # raises on an unknown name or a bad value


def test_later_phrase_wins_and_the_clash_is_noted() -> None:
    result = interpret_offline("白底，不对，蓝底")
    assert result.options["background"] == "#438edb"
    assert any("background" in note for note in result.notes)
    assert "不对" in result.not_understood


def test_a_size_in_pixels_is_the_output_size_unless_an_id_photo_sets_it() -> None:
    shop = resolve_options({}, "amazon 1000x1000")
    assert shop.options.output_size == (1000, 1000) and shop.options.preset == "marketplace"
    assert interpret_offline("800×600px").options == {"output_size": "800x600"}
    assert interpret_offline("413x579").options == {"preset": "id-2inch"}  # a standard ID size's pixels at 300 dpi
    assert "output_size" not in interpret_offline("99999x99999").options  # beyond what the engine makes
    passport = resolve_options({}, "passport photo 600x800")  # not an error: the passport size stands
    assert passport.options.id_size == "35x45" and passport.options.output_size is None
    assert "600x800 px left out" in passport.explanation("en") and "未采用 600x800 像素" in passport.explanation("zh")
    plain_id = interpret_offline("证件照 500x700")  # no standard size named: the pixel size frames it
    assert plain_id.options == {"preset": "id-photo", "output_size": "500x700"} and not plain_id.notes


def test_id_photo_without_a_size_says_how_to_crop() -> None:
    result = interpret_offline("证件照")
    assert result.options == {"preset": "id-photo"}
    assert any("一寸" in note for note in result.notes)


def test_language_follows_the_text() -> None:
    assert interpret_offline("蓝底").language == "zh"
    assert interpret_offline("blue background").language == "en"


def test_explicit_options_win_and_the_answer_says_so() -> None:
    resolved = resolve_options({"format": "png", "background": "#ffffff"}, "蓝底二寸证件照 jpg")
    assert resolved.options.format == "png" and resolved.options.background == (255, 255, 255)
    assert resolved.options.id_size == "2inch" and resolved.options.preset == "id-2inch"
    overridden = {item["option"]: item for item in resolved.overridden}
    assert set(overridden) == {"format", "background"}
    assert overridden["background"]["instruction"] == "#438edb"
    assert "明确给出的选项优先" in resolved.explanation("zh")
    assert "explicit format=png wins over jpeg" in resolved.explanation("en")


def test_an_explicit_option_equal_to_the_instruction_is_no_override() -> None:
    assert resolve_options({"format": "jpg"}, "jpeg").overridden == []


def test_contradicting_instruction_is_a_clear_error() -> None:
    with pytest.raises(InvalidOptionError, match="instruction .* jpeg cannot be transparent"):
        resolve_options({}, "透明背景 jpg")


def test_too_long_instruction_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match="limit"):
        resolve_options({}, "蓝" * (MAX_INSTRUCTION_CHARS + 1))


def test_no_instruction_is_just_the_options() -> None:
    resolved = resolve_options({"preset": "avatar"}, "  ")
    assert resolved.interpretation is None and resolved.options == parse_options(preset="avatar")
    assert resolved.explanation() == ""


def test_explanation_lists_understood_ignored_and_not_understood_in_both_languages() -> None:
    resolved = resolve_options({}, "把背景换成蓝色 sparkles")
    zh, en = resolved.explanation("zh"), resolved.explanation("en")
    assert "已识别：蓝色 → 背景 证件蓝 #438edb" in zh and "未能理解：sparkles" in zh and zh.endswith("是否确认？")
    assert "Understood: 蓝色 → background ID blue #438edb" in en and "Not understood: 'sparkles'" in en
    assert "Ignored" in en and "把" in en
    assert not resolved.explanation("en", question=False).endswith("Confirm?")


def test_to_dict_is_the_api_answer() -> None:
    data = resolve_options({}, "蓝底二寸证件照").to_dict("zh")
    assert data["options"]["id_size"] == "2inch" and data["options"]["background"] == "#438edb"
    assert data["from_instruction"] == {"background": "#438edb", "preset": "id-2inch"}
    assert [m["text"] for m in data["mapped"]] == ["蓝底", "二寸 证件照"]
    assert "413×579" in data["explanation"] and data["interpreter"] == "offline"


def test_every_id_size_has_a_preset_and_is_reachable_by_instruction() -> None:
    sayings = {
        "id-1inch": "一寸",
        "id-small-1inch": "小一寸",
        "id-large-1inch": "大一寸",
        "id-2inch": "二寸",
        "id-small-2inch": "小二寸",
        "id-large-2inch": "大二寸",
        "passport-33x48": "护照",
        "passport-35x45": "35x45mm",
        "passport-2x2in": "US passport",
    }
    assert {name for name in PRESETS if PRESETS[name].get("id_size")} == set(sayings)
    for preset, say in sayings.items():
        assert interpret_offline(say).options["preset"] == preset, say


def test_notes_are_in_chinese_on_the_chinese_explanation() -> None:
    zh = resolve_options({}, "白底，不对，蓝底").explanation("zh")
    assert "“蓝底”（#438edb）覆盖了之前的 background #ffffff" in zh
    assert "未指定尺寸" in resolve_options({}, "证件照").explanation("zh")
    assert "no photo size named" in resolve_options({}, "证件照").explanation("en")
