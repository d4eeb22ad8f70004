"""The page as people come back to it, in real Chromium (Debian's binary, headless) against the live waitress
server, real Redis and the shared real worker: history surviving a reload and a browser restart, options that
re-render the photo on screen, cards that open large with downloads, masks for one photo, server reasons in
中文, a keyboard-only upload, the phone layout, friendly failures and an accessibility check (axe-core).

The layout tests take screenshots into the test's temporary folder, or ``$MATTEFLOW_SCREENSHOT_DIR`` to keep
them for a look (the README's own are made with the shipped model by ``docs/screenshots/capture.py``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from waitress import create_server

from matteflow.web import create_app
from matteflow.workers.client import JobClient

from .helpers import noise_jpeg, serving_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]

RESULT_TIMEOUT_MS = 60_000
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
PEOPLE = sorted((Path(__file__).parents[1] / "data" / "people").glob("*.jpg"))

DROP_FILE_JS = """
([selector, name, type, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  const target = document.querySelector(selector);
  target.dispatchEvent(new DragEvent("dragenter", { dataTransfer: data, bubbles: true, cancelable: true }));
  target.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}
"""


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MATTEFLOW_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def drop(page: Any, name: str, mime: str, data: bytes, selector: str = "#single-drop") -> None:
    page.evaluate(DROP_FILE_JS, [selector, name, mime, base64.b64encode(data).decode()])


def wait_single(page: Any, state: str = "done") -> None:
    page.wait_for_selector(f"#single-result[data-state={state}]", timeout=RESULT_TIMEOUT_MS)


def run_batch(page: Any, files: list[dict[str, Any]]) -> None:
    page.click("#tab-batch")
    page.set_input_files("#batch-input", files)
    page.click("#batch-start")
    page.wait_for_selector("#batch-job[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#batch-grid .item[data-state=done] img')].every(i => i.naturalWidth)",
        timeout=RESULT_TIMEOUT_MS,
    )


def saved(download: Any, folder: Path) -> Path:
    path = folder / download.suggested_filename
    download.save_as(path)
    return path


def people(count: int) -> list[dict[str, Any]]:
    return [{"name": p.name, "mimeType": "image/jpeg", "buffer": p.read_bytes()} for p in PEOPLE[:count]]


# --- history -------------------------------------------------------------------------------------------------


def test_history_survives_a_reload_and_a_browser_restart(
    open_page: Callable[..., Any], samples: Any, tmp_path: Path
) -> None:
    page = open_page()
    drop(page, "portrait.jpg", "image/jpeg", samples.jpeg)
    wait_single(page)
    run_batch(
        page,
        [
            {"name": "alice.jpg", "mimeType": "image/jpeg", "buffer": samples.jpeg},
            {"name": "notes.png", "mimeType": "image/png", "buffer": samples.text},
        ],
    )
    assert page.inner_text("#history-count") == "2"

    page.reload()
    # What was on screen comes back: the batch's cards and ZIP link, and the photo in the single view.
    page.wait_for_selector("#batch-job[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    assert page.locator("#batch-grid .item").count() == 2
    assert page.get_attribute("#batch-zip", "href").endswith("/results.zip")
    page.click("#tab-single")
    wait_single(page)
    assert page.eval_on_selector("#before-img", "img => img.naturalWidth") == 96

    page.click("#tab-history")
    page.wait_for_selector("#history-grid .item[data-state=done] >> nth=1", timeout=RESULT_TIMEOUT_MS)
    names = page.locator("#history-grid .item-name").all_inner_texts()
    assert names[0].startswith("2 photos") and names[1] == "portrait.jpg"  # newest first
    assert page.locator("#history-grid .item").nth(0).locator(".download").inner_text() == "ZIP"

    # A browser restart: a new context with the same storage (cookies + localStorage), nothing else.
    state = page.context.storage_state()
    # Plus an id the server no longer knows: it shows as expired, not as an error.
    origin = state["origins"][0]
    history = next(entry for entry in origin["localStorage"] if entry["name"] == "matteflow.history.v1")
    entries = json.loads(history["value"])
    entries.append(
        {"id": "X" * 22, "kind": "single", "names": ["old.jpg"], "total": 1, "created": entries[-1]["created"] - 1}
    )
    history["value"] = json.dumps(entries)
    again = open_page(storage_state=state)
    again.click("#tab-history")
    again.wait_for_selector("#history-grid .item[data-state=expired]", timeout=RESULT_TIMEOUT_MS)
    assert again.locator("#history-grid .item").count() == 3
    expired = again.locator("#history-grid .item[data-state=expired]")
    assert expired.locator(".badge").inner_text() == "Expired"
    assert expired.locator(".item-open").is_disabled()

    # Opening the photo from the history puts it, and the options it was made with, back on screen.
    again.locator("#history-grid .item", has_text="portrait.jpg").locator(".item-open").click()
    wait_single(again)
    assert again.is_visible("#single-result")
    with again.expect_download() as info:
        again.click("#single-download")
    assert Image.open(saved(info.value, tmp_path)).size == (96, 128)

    # "Clear history" asks first, then forgets every id in this browser.
    again.click("#tab-history")
    again.once("dialog", lambda dialog: dialog.dismiss())
    again.click("#history-clear")
    assert again.locator("#history-grid .item").count() == 3
    again.once("dialog", lambda dialog: dialog.accept())
    again.click("#history-clear")
    assert again.locator("#history-grid .item").count() == 0 and again.is_visible("#history-empty")
    assert again.evaluate("localStorage.getItem('matteflow.history.v1')") == "[]"


# --- live options ----------------------------------------------------------------------------------------


def test_a_preset_change_re_renders_without_a_click_and_none_resets(
    open_page: Callable[..., Any], samples: Any, tmp_path: Path
) -> None:
    page = open_page()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    drop(page, "portrait.jpg", "image/jpeg", samples.jpeg)
    wait_single(page)
    assert page.get_attribute("#single-download", "download") == "portrait_matte.png"

    page.select_option("#opt-preset", "id-photo")
    # At once the old result is marked out of date: it never sits beside options it was not made with.
    assert page.get_attribute("#single-result", "data-state") in ("stale", "running")
    assert "disabled" in page.get_attribute("#single-download", "class")
    wait_single(page)
    assert page.get_attribute("#single-download", "download") == "portrait_matte.jpg"
    with page.expect_download() as info:
        page.click("#single-download")
    image = Image.open(saved(info.value, tmp_path))
    assert image.format == "JPEG" and image.mode == "RGB"  # composited (the test model is untrained)

    page.select_option("#opt-preset", "")
    wait_single(page)
    assert page.input_value("#opt-threshold") == "0" and page.input_value("#opt-erode") == "0"
    assert page.input_value("#opt-format") == "png" and page.is_checked("input[name=bg_mode][value=transparent]")
    assert page.get_attribute("#single-download", "download") == "portrait_matte.png"

    # Several quick changes, one re-render; the photo was uploaded once.
    page.fill("#opt-erode", "3")
    page.fill("#opt-erode", "4")
    wait_single(page)
    uploads = [u for u in posts if u.endswith("/api/v1/jobs")]
    reruns = [u for u in posts if u.endswith("/rerun")]
    assert len(uploads) == 1 and 3 <= len(reruns) <= 4, posts

    # The shadow box re-renders with shadow=true (the untrained test model finds no subject to shade).
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/rerun")) as rerun:
        page.check("#opt-shadow")
    assert 'name="shadow"\r\n\r\ntrue' in (rerun.value.post_data or "")
    wait_single(page)


# --- items and masks -------------------------------------------------------------------------------------


def test_a_card_opens_large_and_downloads_its_image_and_mask(
    open_page: Callable[..., Any], samples: Any, tmp_path: Path
) -> None:
    page = open_page()
    page.check("#opt-mask")
    long_name = "bgm_wedding_2026_family_portrait_left_side_final_v2.jpg"
    run_batch(
        page,
        [
            {"name": long_name, "mimeType": "image/jpeg", "buffer": samples.jpeg},
            {"name": "bob.png", "mimeType": "image/png", "buffer": samples.png},
            {"name": "notes.png", "mimeType": "image/png", "buffer": samples.text},
        ],
    )
    heights = page.eval_on_selector_all("#batch-grid .item", "cards => cards.map(c => c.offsetHeight)")
    assert len(set(heights)) == 1, heights  # even cards, however long the name or reason
    card = page.locator("#batch-grid .item").nth(0)
    assert card.locator(".item-open").get_attribute("title") == long_name
    card.locator(".item-open").click()
    page.wait_for_selector("#viewer[open]")
    assert page.inner_text("#viewer-name") == long_name
    page.wait_for_function("() => document.getElementById('viewer-before').naturalWidth === 96")
    with page.expect_download() as info:
        page.click("#viewer-download")
    assert info.value.suggested_filename == long_name.replace(".jpg", ".png")
    with page.expect_download() as info:
        page.click("#viewer-mask")
    assert info.value.suggested_filename.endswith("_mask.png")
    assert Image.open(saved(info.value, tmp_path)).mode == "L"
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    assert page.evaluate("document.activeElement.classList.contains('item-open')")  # focus went back

    page.locator("#batch-grid .item[data-state=failed] .item-open").click()
    page.wait_for_selector("#viewer[open]")
    assert "not a supported image" in page.inner_text("#viewer-reason")
    assert page.is_hidden("#viewer-download")


def test_a_single_photo_with_its_mask(open_page: Callable[..., Any], samples: Any, tmp_path: Path) -> None:
    page = open_page()
    page.check("#opt-mask")
    drop(page, "portrait.jpg", "image/jpeg", samples.jpeg)
    wait_single(page)
    with page.expect_download() as info:
        page.click("#single-mask")
    assert info.value.suggested_filename == "portrait_mask.png"
    mask = Image.open(saved(info.value, tmp_path))
    assert mask.mode == "L" and mask.size == (96, 128)
    page.uncheck("#opt-mask")  # a live change: the mask goes with the re-render
    wait_single(page)
    assert page.is_hidden("#single-mask")


READ_CLIPBOARD_JS = """
async () => {
  // The clipboard's image, and how far its pixels are from the result shown on the page.
  const [item] = await navigator.clipboard.read();
  const pixels = async (source) => {
    const bitmap = await createImageBitmap(source);
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    return canvas.getContext("2d").getImageData(0, 0, bitmap.width, bitmap.height);
  };
  const pasted = await pixels(await item.getType("image/png"));
  const shown = await pixels(document.querySelector("#after-img"));
  let difference = 0;
  for (let i = 0; i < pasted.data.length; i++) difference += Math.abs(pasted.data[i] - shown.data[i]);
  const opaque = pasted.data.every((value, i) => i % 4 !== 3 || value === 255);
  return { types: item.types, width: pasted.width, height: pasted.height,
           difference: difference / pasted.data.length, opaque };
}
"""


def test_copy_puts_the_cut_out_on_the_clipboard_as_png(open_page: Callable[..., Any], samples: Any) -> None:
    page = open_page(permissions=["clipboard-read", "clipboard-write"])
    drop(page, "portrait.jpg", "image/jpeg", samples.jpeg)
    wait_single(page)
    page.click("#single-copy")
    page.wait_for_function("() => document.querySelector('#single-status').textContent.startsWith('Copied')")
    pasted = page.evaluate(READ_CLIPBOARD_JS)
    assert pasted["types"] == ["image/png"] and (pasted["width"], pasted["height"]) == (96, 128)
    assert pasted["difference"] == 0 and not pasted["opaque"]  # the transparent PNG itself
    # A JPEG on red is redrawn as PNG (clipboards take PNG only): the same pixels, opaque.
    page.select_option("#opt-format", "jpeg")
    page.click(".swatch[data-colour='#d9262e']")
    page.wait_for_function(
        "() => document.querySelector('#single-result').dataset.state === 'done'"
        " && document.querySelector('#single-download').download.endsWith('.jpg')"
        " && !document.querySelector('#single-copy').classList.contains('hidden')",
        timeout=RESULT_TIMEOUT_MS,
    )
    page.click("#single-copy")
    page.wait_for_function("() => document.querySelector('#single-status').textContent.startsWith('Copied')")
    pasted = page.evaluate(READ_CLIPBOARD_JS)
    assert pasted["types"] == ["image/png"] and pasted["opaque"] and pasted["difference"] < 1


PASTE_TEXT_JS = """
(text) => {
  const data = new DataTransfer();
  data.setData("text/plain", text);
  document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
}
"""
DROP_LINK_JS = """
([selector, url]) => {
  const data = new DataTransfer();
  data.setData("text/uri-list", "# dragged from another page\\r\\n" + url);
  const target = document.querySelector(selector);
  target.dispatchEvent(new DragEvent("dragenter", { dataTransfer: data, bubbles: true, cancelable: true }));
  target.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}
"""


def test_a_batch_items_warnings_show_in_its_large_view(open_page: Callable[..., Any], samples: Any) -> None:
    """The untrained test network finds no person, so a 二寸 ID photo warns; the large view says so in 中文."""
    page = open_page(locale="zh-CN")
    page.select_option("#opt-preset", "id-2inch")
    run_batch(page, [{"name": "me.jpg", "mimeType": "image/jpeg", "buffer": samples.jpeg}])
    card_note = page.locator("#batch-grid .item").nth(0).locator(".reason")
    assert "照片中未找到人物" in card_note.inner_text()  # on the card itself, in amber (advice, not a failure)
    assert card_note.evaluate("e => getComputedStyle(e).color") == "rgb(180, 83, 9)"
    page.locator("#batch-grid .item").nth(0).locator(".item-open").click()
    page.wait_for_selector("#viewer[open]")
    reason = page.inner_text("#viewer-reason")
    assert "照片中未找到人物" in reason and "no person" not in reason


def test_a_pasted_or_dropped_web_address_is_cut_out(open_page: Callable[..., Any], origin: Any, samples: Any) -> None:
    """The test server reads images from 127.0.0.1: a pasted address, or an image dragged from another page
    (its address), is sent as image_url; the "before" is what the server read."""
    page = open_page()
    assert "web address" in page.inner_text("#single-drop-hint")
    page.evaluate(PASTE_TEXT_JS, f"{origin.url}/photos/from-the-web.jpg")
    wait_single(page)
    assert page.get_attribute("#single-download", "download") == "from-the-web_matte.png"
    page.wait_for_function("() => document.querySelector('#before-img').naturalWidth === 96")
    assert "input=1" in (page.get_attribute("#before-img", "src") or "")
    # A dead link: its reason in the page's words, no result.
    page.evaluate(DROP_LINK_JS, ["#single-drop", f"{origin.url}/gone.jpg"])
    wait_single(page, "failed")
    assert "could not be fetched" in page.inner_text("#single-status")
    # Text that is not an address pastes nothing.
    page.evaluate(PASTE_TEXT_JS, "just some words")
    assert page.get_attribute("#single-result", "data-state") == "failed"


def test_a_batch_takes_pasted_and_dropped_addresses_beside_files(
    open_page: Callable[..., Any], origin: Any, samples: Any
) -> None:
    """A column of addresses pasted into the batch tab (a spreadsheet's copy: comments, tabs, words that are
    not addresses), and links dragged in, become items the workers read; a dead one fails alone."""
    page = open_page()
    page.click("#tab-batch")
    assert "web addresses" in page.inner_text("#batch-drop-hint")
    listing = f"# feed\n{origin.url}/photos/shoe.jpg\tred shoe\n{origin.url}/gone.jpg\nnot an address\n"
    page.evaluate(PASTE_TEXT_JS, listing)
    page.evaluate(DROP_LINK_JS, ["#batch-drop", f"{origin.url}/photos/bag.jpg"])
    page.evaluate(PASTE_TEXT_JS, f"{origin.url}/photos/shoe.jpg")  # already listed: once
    page.set_input_files("#batch-input", [{"name": "mine.jpg", "mimeType": "image/jpeg", "buffer": samples.jpeg}])
    assert page.inner_text("#batch-selection").endswith("3 image addresses")
    assert page.get_attribute("#tab-batch", "aria-selected") == "true"  # pasting stayed in the batch
    page.click("#batch-start")
    page.wait_for_selector("#batch-job[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    cards = page.locator("#batch-grid .item")
    states = {
        cards.nth(i).locator(".item-name").inner_text(): cards.nth(i).get_attribute("data-state") for i in range(4)
    }
    assert states == {"mine.jpg": "done", "shoe.jpg": "done", "gone.jpg": "failed", "bag.jpg": "done"}
    failed = page.locator("#batch-grid .item[data-state=failed] .reason").inner_text()
    assert "could not be fetched" in failed


def test_a_batch_whose_upload_broke_off_is_not_created_twice(browser: Any, live_server: Any, samples: Any) -> None:
    """The server creates the job, the answer never arrives (the connection dies): the page says so, and the
    user's second click sends the same Idempotency-Key, so the server gives back the job it made: one job."""
    context = browser.new_context(locale="en-US")  # its own context: the broken connection is logged on purpose
    page = context.new_page()
    keys: list[str] = []
    created: list[str] = []

    def lose_the_first_answer(route: Any) -> None:
        keys.append(route.request.headers.get("idempotency-key", ""))
        answer = route.fetch()  # the server gets the request and creates the job
        created.append(answer.json()["id"])
        if len(created) == 1:
            route.abort("connectionreset")  # ... and the page never hears of it
        else:
            route.fulfill(response=answer)

    page.route(
        "**/api/v1/jobs",
        lambda route: lose_the_first_answer(route) if route.request.method == "POST" else route.fallback(),
    )
    try:
        page.goto(live_server.url + "/")
        page.click("#tab-batch")
        page.set_input_files("#batch-input", [{"name": "once.jpg", "mimeType": "image/jpeg", "buffer": samples.jpeg}])
        page.click("#batch-start")
        page.wait_for_selector("#batch-job[data-state=failed]", timeout=RESULT_TIMEOUT_MS)
        page.click("#batch-start")  # the user tries again
        page.wait_for_selector("#batch-job[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    finally:
        context.close()
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]
    assert len(created) == 2 and created[0] == created[1]  # the same job both times: not created twice


def test_a_batch_bigger_than_one_upload_goes_in_parts_as_one_job(
    browser: Any, service_settings: Any, samples: Any
) -> None:
    """A server that takes 1 MB per request, a batch of 2.7 MB: the page sends it as one job in parts (open
    with the first photo, three more, close) instead of refusing it, and the batch ends with one ZIP of all.
    The connection dies after the server took the second part: the user's second click gets back what the
    server already has (same keys) and sends only the rest."""
    settings = service_settings.replace(max_upload_mb=1)
    photos = [noise_jpeg(seed) for seed in range(4)]
    assert all(600_000 < len(photo) < 930_000 for photo in photos), [len(p) for p in photos]  # one per part
    requests: list[str] = []
    keys: list[str] = []
    lost: list[str] = []

    def lose_the_first_part_answer(route: Any) -> None:
        keys.append(route.request.headers.get("idempotency-key", ""))
        if lost:
            route.fallback()
            return
        route.fetch()  # the server stores the part ...
        lost.append(route.request.url)
        route.abort("connectionreset")  # ... and the page never hears of it

    application = create_app(settings, JobClient(settings))
    with serving_in_thread(create_server(application, host="127.0.0.1", port=0, threads=4)) as url:
        context = browser.new_context(locale="en-US")  # its own context: the broken connection is logged
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url.split("/api/v1/")[-1]) if r.method == "POST" else None)
        page.route("**/api/v1/jobs/*/files", lose_the_first_part_answer)
        try:
            page.goto(url + "/")
            page.click("#tab-batch")
            page.set_input_files(
                "#batch-input",
                [{"name": f"big{i}.jpg", "mimeType": "image/jpeg", "buffer": data} for i, data in enumerate(photos)],
            )
            assert "limit" not in page.inner_text("#batch-selection") and page.is_enabled("#batch-start")
            page.click("#batch-start")
            page.wait_for_selector("#batch-job[data-state=failed]", timeout=RESULT_TIMEOUT_MS)
            page.click("#batch-start")  # the user tries again
            page.wait_for_selector("#batch-job[data-state=done]", timeout=RESULT_TIMEOUT_MS)
            assert page.locator("#batch-grid .item[data-state=done]").count() == 4  # not 5: part 2 once
            with page.expect_download() as download:
                page.click("#batch-zip")
            with zipfile.ZipFile(download.value.path()) as archive:
                names = sorted(n for n in archive.namelist() if n != "manifest.json")
            # A single file over the limit cannot be sent at all: said before any upload.
            page.click("#batch-clear")
            page.set_input_files(
                "#batch-input", [{"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": noise_jpeg(9, (1000, 1000))}]
            )
            assert "huge.jpg is over the 1 MB upload limit" in page.inner_text("#batch-selection")
            assert not page.is_enabled("#batch-start")
        finally:
            context.close()
    job_id = requests[1].split("/")[1]
    files, close = f"jobs/{job_id}/files", f"jobs/{job_id}/close"
    assert requests == ["jobs", files, "jobs", files, files, files, close]
    assert keys[0] == keys[1] and len(set(keys)) == 3  # the lost part went again under its own key
    assert names == ["big0.png", "big1.png", "big2.png", "big3.png"]


def test_an_iphone_heic_photo_is_cut_out_though_the_browser_cannot_show_it(
    open_page: Callable[..., Any], samples: Any
) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(samples.jpeg)).save(buffer, format="HEIF", quality=90)
    page = open_page()
    drop(page, "IMG_0001.HEIC", "", buffer.getvalue())  # desktop browsers often give HEIC no MIME type
    wait_single(page)
    page.wait_for_function("() => document.querySelector('#after-img').naturalWidth === 96")
    # Chromium cannot decode HEIC: a sentence where the original would be, the cut-out beside it.
    assert page.is_visible("#before-missing") and page.get_attribute("#before-img", "src") is None
    assert page.inner_text("#before-missing") == "This browser cannot preview this file."


# --- errors in the user's language --------------------------------------------------------------------------


def test_the_chinese_page_says_the_servers_reason_in_chinese(open_page: Callable[..., Any], samples: Any) -> None:
    page = open_page(locale="zh-CN")
    assert page.inner_text("#tab-single") == "单张图片"
    drop(page, "notes.png", "image/png", samples.text)
    wait_single(page, "failed")
    status = page.inner_text("#single-status")
    assert "不是支持的图片格式" in status and "not a supported" not in status
    # No broken-image icon: the file that cannot be shown gets a sentence instead.
    assert page.is_visible("#before-missing") and page.get_attribute("#before-img", "src") is None
    run_batch(
        page,
        [
            {"name": "a.jpg", "mimeType": "image/jpeg", "buffer": samples.jpeg},
            {"name": "empty.jpg", "mimeType": "image/jpeg", "buffer": samples.empty},
        ],
    )
    assert page.inner_text("#batch-grid .item[data-state=failed] .reason") == "文件是空的（0 字节）"
    # Switching language re-says the reasons.
    page.click("#lang-toggle")
    assert page.inner_text("#batch-grid .item[data-state=failed] .reason") == "the file is empty (0 bytes)"


def test_an_expired_zip_link_opens_a_friendly_page(open_page: Callable[..., Any], live_server: Any) -> None:
    page = open_page(locale="zh-CN")
    page.click("#lang-toggle")  # English is remembered; the expired page follows the page's language
    page.goto(live_server.url + "/api/v1/jobs/" + "E" * 22 + "/results.zip")
    assert page.inner_text("h1") == "This link has expired"
    page.click("text=Back to MatteFlow")
    page.wait_for_selector("#single-drop")


# --- keyboard ------------------------------------------------------------------------------------------------


def tab_to(page: Any, element_id: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    pytest.fail(f"Tab never reached #{element_id}")


def test_keyboard_only_upload(open_page: Callable[..., Any], samples: Any, tmp_path: Path) -> None:
    page = open_page()
    # Listening from the start turns Chromium's file-chooser interception on before the first key press
    # (turning it on inside expect_file_chooser races with a quick press).
    page.on("filechooser", lambda chooser: None)
    tab_to(page, "single-drop")
    outline = page.eval_on_selector("#single-drop", "el => getComputedStyle(el).outlineStyle")
    assert outline != "none"  # focus is visible
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    photo = tmp_path / "keyboard.jpg"
    photo.write_bytes(samples.jpeg)
    chooser.value.set_files(str(photo))
    wait_single(page)

    # The batch tab, its drop zone and "Choose a folder", by keyboard alone (Space opens too).
    page.focus("#tab-single")
    page.keyboard.press("ArrowRight")
    assert page.is_visible("#panel-batch")
    tab_to(page, "batch-drop")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press(" ")
    assert chooser.value.is_multiple()
    chooser.value.set_files(str(photo))
    tab_to(page, "batch-folder-button")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    tab_to(page, "batch-start")
    page.keyboard.press("Enter")
    page.wait_for_selector("#batch-job[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    tab_to(page, "batch-zip")


# --- phone ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_phone_layout_and_screenshots(open_page: Callable[..., Any], samples: Any, shots: Path, locale: str) -> None:
    lang = locale[:2]
    page = open_page(locale=locale, **PHONE)
    # The options fold to one line above the photos, not under every result.
    options, work = page.locator("#options-panel").bounding_box(), page.locator(".work").bounding_box()
    assert options["y"] < work["y"] and options["height"] < 80
    assert not page.eval_on_selector("#options-panel", "d => d.open")
    files = people(5) + [{"name": "notes.txt", "mimeType": "text/plain", "buffer": samples.text}]
    run_batch(page, files)
    lefts = {
        round(box["x"])
        for box in page.eval_on_selector_all(
            "#batch-grid .item", "cards => cards.map(c => c.getBoundingClientRect().toJSON())"
        )
    }
    assert len(lefts) >= 3  # a compact grid, not one card per row
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 1800, height  # six photos no longer make a 3,400 px page
    page.screenshot(path=str(shots / f"phone-batch-{lang}.png"), full_page=True)
    page.click("#tab-history")
    page.wait_for_selector("#history-grid .item[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    page.screenshot(path=str(shots / f"phone-history-{lang}.png"), full_page=True)


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_desktop_screenshots(open_page: Callable[..., Any], shots: Path, locale: str) -> None:
    lang = locale[:2]
    page = open_page(locale=locale, viewport={"width": 1280, "height": 860})
    page.set_input_files("#single-input", str(PEOPLE[0]))
    wait_single(page)
    page.select_option("#opt-preset", "id-photo")
    wait_single(page)
    page.screenshot(path=str(shots / f"desktop-single-{lang}.png"))
    run_batch(page, people(5))
    page.screenshot(path=str(shots / f"desktop-batch-{lang}.png"))
    page.locator("#batch-grid .item-open").nth(1).click()
    page.wait_for_function("() => document.getElementById('viewer-after').naturalWidth > 0")
    page.screenshot(path=str(shots / f"desktop-viewer-{lang}.png"))
    page.keyboard.press("Escape")
    page.click("#tab-history")
    page.wait_for_selector("#history-grid .item[data-state=done] >> nth=1", timeout=RESULT_TIMEOUT_MS)
    page.screenshot(path=str(shots / f"desktop-history-{lang}.png"))


# --- accessibility -------------------------------------------------------------------------------------------


def axe_violations(page: Any) -> list[dict[str, Any]]:
    axe = pytest.importorskip("axe_playwright_python")
    source = (Path(axe.__file__).parent / "axe.min.js").read_text()
    page.evaluate(source)  # evaluated by the devtools protocol: the page's CSP does not apply
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize(("locale", "options"), [("en-US", {}), ("zh-CN", PHONE)], ids=["desktop-en", "phone-zh"])
def test_no_serious_accessibility_violations(
    open_page: Callable[..., Any], samples: Any, locale: str, options: dict[str, Any]
) -> None:
    page = open_page(locale=locale, **options)
    problems = {"start": axe_violations(page)}
    drop(page, "portrait.jpg", "image/jpeg", samples.jpeg)
    wait_single(page)
    run_batch(page, [{"name": "a.jpg", "mimeType": "image/jpeg", "buffer": samples.jpeg}])
    problems["batch"] = axe_violations(page)
    page.locator("#batch-grid .item-open").first.click()
    page.wait_for_selector("#viewer[open]")
    problems["viewer"] = axe_violations(page)
    page.keyboard.press("Escape")
    page.click("#tab-history")
    page.wait_for_selector("#history-grid .item[data-state=done]", timeout=RESULT_TIMEOUT_MS)
    problems["history"] = axe_violations(page)
    summary = {
        where: [(v["id"], [n["target"] for n in v["nodes"]][:3]) for v in found] for where, found in problems.items()
    }
    assert not any(problems.values()), summary
