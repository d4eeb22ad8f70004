"""The "say what you want" block in real Chromium on the 中文 page: type, read the explanation, confirm,
drop a photo, download a 413×579 JPEG (35×49 mm at 300 dpi) on blue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from .test_browser import RESULT_TIMEOUT_MS, dispatch_file

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]


@pytest.fixture
def zh_page(open_page: Callable[..., Any]) -> Any:
    return open_page(locale="zh-CN")


def test_say_confirm_and_download_a_blue_two_inch_id_photo(zh_page: Any, samples: Any, tmp_path: Any) -> None:
    page = zh_page
    assert page.inner_text("#say-label") == "用一句话说出你的需求"
    assert "蓝底二寸证件照" in page.inner_text("#say-chips")  # example chips in the page's language
    label = page.eval_on_selector("#opt-preset option[value=id-2inch]", "o => o.textContent")
    assert label.startswith("二寸照")  # the ID presets in the menu follow the page's language
    page.fill("#say-input", "蓝底二寸证件照")
    page.click("#say-parse")
    page.wait_for_selector("#say-explain[data-state=ready] #say-confirm:not([disabled])")
    explanation = page.inner_text("#say-text")
    assert "已识别" in explanation and "413×579" in explanation and "是否确认" in explanation

    page.click("#say-confirm")
    assert page.is_hidden("#say-explain")
    assert "蓝底二寸证件照" in page.inner_text("#say-active")
    assert page.input_value("#opt-format") == "jpeg" and page.input_value("#opt-colour") == "#438edb"

    dispatch_file(page, "drop", "me.jpg", "image/jpeg", samples.jpeg)
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    # The untrained test network finds no person: the engine's warning is said in the page's language.
    status = page.inner_text("#single-status")
    assert "照片中未找到人物" in status and "no person" not in status
    with page.expect_download() as download_info:
        page.click("#single-download")
    saved = tmp_path / "result.jpg"
    download_info.value.save_as(saved)
    image = Image.open(saved)
    assert image.format == "JPEG" and image.size == (413, 579)
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.5)
    # The test worker runs an untrained network, so the person is a guess: the top row is background.
    r, g, b = image.convert("RGB").getpixel((206, 1))
    assert abs(r - 0x43) <= 10 and abs(g - 0x8E) <= 10 and abs(b - 0xDB) <= 10


def test_edit_keeps_the_words_and_a_bad_instruction_shows_why(zh_page: Any) -> None:
    page = zh_page
    page.fill("#say-input", "透明背景 jpg")
    page.click("#say-parse")
    page.wait_for_selector("#say-explain[data-state=error]")
    assert "jpeg cannot be transparent" in page.inner_text("#say-text")
    assert page.is_hidden("#say-confirm")
    page.click("#say-edit")
    assert page.is_hidden("#say-explain") and page.input_value("#say-input") == "透明背景 jpg"


def test_chip_in_english_and_a_manual_change_takes_over(page: Any) -> None:
    page.click(".say-chip >> text=PNG for a slide")
    page.wait_for_selector("#say-explain[data-state=ready] #say-confirm:not([disabled])")
    assert "Understood" in page.inner_text("#say-text")
    page.click("#say-confirm")
    assert page.is_visible("#say-active")
    page.select_option("#opt-format", "webp")  # a change by hand: the panel's options are used again
    assert page.is_hidden("#say-active")
