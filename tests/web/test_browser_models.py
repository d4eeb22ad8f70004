"""The page's model select and its "check this one" mark, in real Chromium against a real worker.

The session worker runs the untrained network, whose mattes are all fog: every result has confidence 0,
so every result must be marked.
"""

from __future__ import annotations

from typing import Any

import pytest

from .test_browser import RESULT_TIMEOUT_MS, dispatch_file

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]


def test_presets_set_the_model_select(page: Any) -> None:
    assert page.input_value("#opt-model") == "auto"
    page.select_option("#opt-model", "general")
    page.select_option("#opt-preset", "ecommerce")  # names auto: the preset's model replaces the hand choice
    assert page.input_value("#opt-model") == "auto"
    page.select_option("#opt-model", "people")
    page.select_option("#opt-preset", "avatar")
    assert page.input_value("#opt-model") == "auto"


def test_a_low_confidence_result_is_marked_in_both_languages(page: Any, samples: Any) -> None:
    page.select_option("#opt-model", "people")
    dispatch_file(page, "drop", "portrait.jpg", "image/jpeg", samples.jpeg)
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    assert page.get_attribute("#single-result", "data-check") == "true"
    assert "Check this one" in page.inner_text("#single-status")
    page.click("#lang-toggle")
    assert "请检查此图" in page.inner_text("#single-status")
    page.click("#lang-toggle")

    page.click("#tab-batch")
    page.set_input_files("#batch-input", [{"name": "alice.jpg", "mimeType": "image/jpeg", "buffer": samples.jpeg}])
    page.click("#batch-start")
    page.wait_for_selector("#batch-job[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    card = page.locator(".item[data-state=done]")
    assert card.get_attribute("data-check") == "true"
    assert card.locator(".check-note").inner_text() == "Check this one"
    assert "0.00" in card.locator(".check-note").get_attribute("title")


def test_an_unsure_result_offers_the_other_model_in_one_click(page: Any, samples: Any) -> None:
    page.select_option("#opt-model", "people")
    dispatch_file(page, "drop", "portrait.jpg", "image/jpeg", samples.jpeg)
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    button = page.locator("#single-try-model")
    assert button.is_visible() and button.inner_text() == "Try “Products & objects”"
    page.click("#lang-toggle")
    assert button.inner_text() == "试试“商品与物体”"
    page.click("#lang-toggle")

    with page.expect_request(lambda request: request.url.endswith("/rerun")) as rerun:
        button.click()
    assert 'name="model"\r\n\r\ngeneral\r\n' in (rerun.value.post_data or "")
    assert page.input_value("#opt-model") == "general"
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)

    page.click("#single-reset")  # no photo on screen: nothing to offer
    assert not button.is_visible()


def test_a_doubtful_batch_item_can_be_run_again_with_the_other_model(page: Any, samples: Any) -> None:
    page.click("#tab-batch")
    photos = [{"name": n, "mimeType": "image/jpeg", "buffer": samples.jpeg} for n in ("alice.jpg", "bob.jpg")]
    page.set_input_files("#batch-input", photos)
    page.click("#batch-start")
    page.wait_for_selector("#batch-job[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    page.locator(".item[data-state=done] .item-open").nth(1).click()
    button = page.locator("#viewer-try-model")
    assert button.is_visible() and button.inner_text() == "Try “Products & objects”"
    first = page.get_attribute("#viewer-download", "href")
    with page.expect_request(lambda request: request.url.endswith("/rerun")) as rerun:
        button.click()
    sent = rerun.value.post_data or ""
    assert 'name="items"\r\n\r\n1\r\n' in sent and 'name="model"\r\n\r\ngeneral\r\n' in sent
    page.wait_for_function(
        "() => document.getElementById('viewer-note').textContent.startsWith('Made with')", timeout=RESULT_TIMEOUT_MS
    )
    assert not button.is_visible()  # one try per opening
    redone = page.get_attribute("#viewer-download", "href")
    assert redone != first and "/jobs/" in redone  # the new job's result, offered for download
    assert page.get_attribute("#viewer-after", "src") == redone.replace("?download=1", "")

    # Put it in the batch: the item takes the new result (its card too) and the ZIP is written again.
    adopt = page.locator("#viewer-adopt")
    assert adopt.is_visible() and adopt.inner_text() == "Use this one in the batch ZIP"
    with page.expect_response(lambda r: r.url.endswith("/items/1/adopt")) as adopted:
        adopt.click()
    assert adopted.value.status == 202 and adopted.value.json()["model"] == "general"
    page.wait_for_function(
        "() => document.getElementById('viewer-note').textContent.includes('the batch ZIP now has this result')"
    )
    assert not adopt.is_visible()
    job_url = adopted.value.url.rsplit("/items/", 1)[0]
    assert page.request.get(job_url).json()["items"][1]["model"] == "general"
    page.click("#viewer-close")
    assert "v=" in (page.locator(".item").nth(1).locator("img").get_attribute("src") or "")
