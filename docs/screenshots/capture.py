"""Take the README's screenshots of the page (desktop and phone, English and 简体中文) from a running service.

    .venv/bin/matteflow up --port 7815 &          # the shipped model, so the cut-outs are real
    .venv/bin/python docs/screenshots/capture.py http://127.0.0.1:7815

Drives Debian's chromium (headless) through Playwright with the committed test photos (tests/data/people,
COCO/Flickr CC BY 2.0 / CC BY-SA 2.0, and the public-domain astronaut portrait, see tests/data/README.md).
Chinese text needs a CJK font on the machine (Debian: ``apt-get install fonts-wqy-microhei``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

HERE = Path(__file__).parent
PEOPLE = sorted((HERE.parents[1] / "tests" / "data" / "people").glob("*.jpg"))
# The one-photo view shows what that view is for, a portrait made into an ID photo (public domain, see
# tests/data/README.md); the batch views show the crowded COCO photos as they come.
PORTRAIT = HERE.parents[1] / "tests" / "data" / "portraits" / "astronaut.jpg"
TIMEOUT_MS = 120_000
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


def wait_done(page: Page, selector: str) -> None:
    page.wait_for_selector(f"{selector}[data-state=done]", timeout=TIMEOUT_MS)
    page.wait_for_timeout(400)  # images decode


def desktop(page: Page, lang: str) -> None:
    page.set_input_files("#single-input", str(PORTRAIT))
    wait_done(page, "#single-result")
    page.select_option("#opt-preset", "id-photo")
    page.click(".swatch[data-colour='#438edb']")
    wait_done(page, "#single-result")
    page.screenshot(path=str(HERE / f"desktop-single-{lang}.png"))
    page.click("#tab-batch")
    page.select_option("#opt-preset", "")
    page.set_input_files("#batch-input", [str(p) for p in PEOPLE])
    page.click("#batch-start")
    wait_done(page, "#batch-job")
    page.screenshot(path=str(HERE / f"desktop-batch-{lang}.png"))
    page.click("#tab-history")
    page.wait_for_selector("#history-grid .item[data-state=done] >> nth=1", timeout=TIMEOUT_MS)
    page.wait_for_timeout(400)
    page.screenshot(path=str(HERE / f"desktop-history-{lang}.png"))


def phone(page: Page, lang: str) -> None:
    page.click("#tab-batch")
    page.set_input_files("#batch-input", [str(p) for p in PEOPLE])
    page.click("#batch-start")
    wait_done(page, "#batch-job")
    page.screenshot(path=str(HERE / f"phone-batch-{lang}.png"), full_page=True)


def main(url: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        for lang, locale in (("en", "en-US"), ("zh", "zh-CN")):
            for kind, options in (("desktop", {"viewport": {"width": 1280, "height": 860}}), ("phone", PHONE)):
                context = browser.new_context(locale=locale, **options)
                page = context.new_page()
                page.goto(url)
                (desktop if kind == "desktop" else phone)(page, lang)
                context.close()
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7860")
