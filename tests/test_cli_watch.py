"""``matteflow matte --watch``: a hot folder, through the real CLI in a child process (the shipped models)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from matteflow.watch import FolderWatch

DATA = Path(__file__).resolve().parent / "data"
PERSON = DATA / "people" / "000000522418.jpg"
FLOWER = DATA / "objects" / "flower.jpg"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_hot_folder_cuts_out_what_arrives_once_it_has_settled(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    out = inbox / "cut"  # inside the watched folder: its own results must not come back as inputs
    report = tmp_path / "report.json"
    (inbox / "first.jpg").write_bytes(PERSON.read_bytes())
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MATTEFLOW_")}
    command = [sys.executable, "-m", "matteflow", "matte", str(inbox), "-o", str(out), "--watch", "-q"]
    child = subprocess.Popen([*command, "--report", str(report)], stderr=subprocess.PIPE, text=True, env=environ)
    try:
        wait_for(lambda: (out / "first.png").is_file(), 180, "the image already there")
        first_written = (out / "first.png").stat().st_mtime_ns

        # Copied in slowly: half, a pause shorter than the settle time, the rest. Read once, whole.
        data = FLOWER.read_bytes()
        with open(inbox / "slow.jpg", "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            time.sleep(0.4)
            handle.write(data[len(data) // 2 :])
        (inbox / "sub").mkdir()
        (inbox / "sub" / "deep.jpg").write_bytes(PERSON.read_bytes())
        (inbox / "notes.png").write_text("a shopping list, not a picture")  # fails alone; watching goes on
        (inbox / ".partial.jpg").write_bytes(PERSON.read_bytes())  # a copy tool's temporary: ignored...
        (inbox / ".partial.jpg").rename(inbox / "renamed.jpg")  # ...until it is renamed into place
        wait_for(
            lambda: all((out / name).is_file() for name in ("slow.png", "sub/deep.png", "renamed.png")),
            120,
            "the arrivals",
        )
        time.sleep(0.2)
        (inbox / "first.jpg").write_bytes(FLOWER.read_bytes())  # rewritten: done again
        wait_for(lambda: (out / "first.png").stat().st_mtime_ns > first_written, 60, "the rewritten image")
        assert Image.open(out / "slow.png").size == Image.open(FLOWER).size
        assert Image.open(out / "first.png").size == Image.open(FLOWER).size
    finally:
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)

    assert child.returncode == 1, stderr  # the text file failed; everything else was done
    assert "stopping after the images in flight" in stderr and "notes.png" in stderr
    body = json.loads(report.read_text())
    states = {Path(item["name"]).relative_to(inbox).as_posix(): item["state"] for item in body["items"]}
    assert states == {
        "first.jpg": "done",
        "slow.jpg": "done",
        "sub/deep.jpg": "done",
        "renamed.jpg": "done",
        "notes.png": "failed",
    }, states
    assert not (out / "cut").exists() and not (out / ".partial.png").exists()


def test_watch_needs_a_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "matteflow", "matte", str(PERSON), "-o", str(tmp_path / "o"), "--watch"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "--watch needs an input folder" in result.stderr


@pytest.mark.parametrize("pause", [0.0, 0.3])
def test_an_image_is_settled_only_after_a_quiet_spell(tmp_path: Path, pause: float) -> None:
    target = tmp_path / "a.jpg"
    with FolderWatch([tmp_path], settle_s=0.5) as watch:
        with open(target, "wb") as handle:
            handle.write(b"\xff\xd8" + b"0" * 1000)
            handle.flush()
            time.sleep(pause)
            handle.write(b"1" * 1000)
        time.sleep(0.2)
        assert watch.settled() == []  # still within its quiet spell
        wait_for(lambda: watch.settled() == [target] or None, 5, "the settled image")
        assert watch.settled() == []  # reported once per change
        target.write_bytes(b"\xff\xd8" + b"2" * 10)
        wait_for(lambda: watch.settled() == [target] or None, 5, "the rewritten image")
