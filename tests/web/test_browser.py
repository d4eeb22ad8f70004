"""The page in real Chromium (Debian's binary, headless) against the live waitress server, real Redis and a
real worker: drop or paste a photo and download the cut-out; run a batch with a bad file and download the ZIP.
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from typing import Any

import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]

RESULT_TIMEOUT_MS = 60_000

# Builds a File from base64 in the page and fires the same events a user's drop or paste would.
DISPATCH_FILE_JS = """
([selector, kind, name, type, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  if (kind === "drop") {
    const target = document.querySelector(selector);
    target.dispatchEvent(new DragEvent("dragenter", { dataTransfer: data, bubbles: true, cancelable: true }));
    target.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  } else {
    document.body.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  }
}
"""


def dispatch_file(page: Any, kind: str, name: str, mime: str, data: bytes, selector: str = "#single-drop") -> None:
    page.evaluate(DISPATCH_FILE_JS, [selector, kind, name, mime, base64.b64encode(data).decode()])


def test_drop_a_photo_see_the_result_and_download_it(page: Any, samples: Any, tmp_path: Any) -> None:
    dispatch_file(page, "drop", "portrait.jpg", "image/jpeg", samples.jpeg)
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    assert page.eval_on_selector("#after-img", "img => img.naturalWidth") == 96
    assert page.eval_on_selector("#before-img", "img => img.naturalWidth") == 96
    assert "96×128" in page.inner_text("#single-status")

    # The before/after seam follows the slider.
    page.fill("#compare-range", "20")
    page.dispatch_event("#compare-range", "input")
    assert "80%" in page.eval_on_selector("#before-img", "img => img.style.clipPath")

    with page.expect_download() as download_info:
        page.click("#single-download")
    download = download_info.value
    assert download.suggested_filename == "portrait_matte.png"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    image = Image.open(saved)
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (96, 128)


def test_paste_with_a_preset_gives_a_jpeg(page: Any, samples: Any) -> None:
    page.select_option("#opt-preset", "id-photo")
    assert page.input_value("#opt-format") == "jpeg"
    assert page.is_checked("input[name=bg_mode][value=colour]")
    dispatch_file(page, "paste", "clip.png", "image/png", samples.png)
    page.wait_for_selector("#single-result[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    assert page.get_attribute("#single-download", "download") == "clip_matte.jpg"


def test_a_bad_photo_shows_the_servers_reason(page: Any, samples: Any) -> None:
    dispatch_file(page, "drop", "notes.png", "image/png", samples.text)
    page.wait_for_selector("#single-result[data-state=failed]", timeout=RESULT_TIMEOUT_MS)
    status = page.inner_text("#single-status")
    assert "not a supported image" in status
    assert "disabled" in page.get_attribute("#single-download", "class")


def test_batch_of_three_with_one_bad_file(page: Any, samples: Any, tmp_path: Any) -> None:
    page.click("#tab-batch")
    page.set_input_files(
        "#batch-input",
        [
            {"name": "alice.jpg", "mimeType": "image/jpeg", "buffer": samples.jpeg},
            {"name": "notes.png", "mimeType": "image/png", "buffer": samples.text},
            {"name": "bob.png", "mimeType": "image/png", "buffer": samples.png},
        ],
    )
    assert "3 files selected" in page.inner_text("#batch-selection")
    page.click("#batch-start")
    page.wait_for_selector("#batch-job[data-state=done]", timeout=RESULT_TIMEOUT_MS)

    assert page.locator(".item[data-state=done]").count() == 2
    failed = page.locator(".item[data-state=failed]")
    assert failed.count() == 1
    assert failed.locator(".item-name").inner_text() == "notes.png"
    assert "not a supported image" in failed.locator(".reason").inner_text()
    assert "2 done, 1 failed" in page.inner_text("#batch-status")
    # Thumbnails of the finished items are the results, loaded from the API.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.item[data-state=done] img')].every(i => i.naturalWidth > 0)",
        timeout=RESULT_TIMEOUT_MS,
    )

    with page.expect_download() as download_info:
        page.click("#batch-zip")
    download = download_info.value
    assert re.fullmatch(r"batch_results_\d{14}\.zip", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        alice = Image.open(io.BytesIO(archive.read("alice.png")))
    assert names == {"alice.png", "bob.png", "manifest.json"}
    assert alice.mode == "RGBA" and alice.size == (96, 128)
    assert "not a supported image" in json.dumps(manifest)


def test_language_switch_is_remembered(page: Any, live_server: Any) -> None:
    assert page.inner_text("#tab-single") == "Single image"
    page.click("#lang-toggle")
    assert page.inner_text("#tab-single") == "单张图片"
    assert page.get_attribute("html", "lang") == "zh-CN"
    page.reload()
    assert page.inner_text("#tab-single") == "单张图片"
    assert page.inner_text("#lang-toggle") == "English"
    page.click("#lang-toggle")
    assert page.inner_text("#tab-batch") == "Batch"


def test_folder_pick_keeps_images_only(page: Any, samples: Any, tmp_path: Any) -> None:
    folder = tmp_path / "shoot"
    (folder / "day2").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(samples.jpeg)
    (folder / "day2" / "b.png").write_bytes(samples.png)
    (folder / "day2" / "notes.txt").write_text("not an image")
    page.click("#tab-batch")
    page.set_input_files("#batch-folder", str(folder))
    assert "2 files selected" in page.inner_text("#batch-selection")
    assert page.is_enabled("#batch-start")
    page.click("#batch-clear")
    assert "No files selected" in page.inner_text("#batch-selection")
    assert page.is_disabled("#batch-start")
