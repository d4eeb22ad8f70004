"""`matteflow matte` as a user runs it: a real subprocess on real files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ENV = {**os.environ, "MATTEFLOW_MODEL": "unet-random"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "matteflow", *args], capture_output=True, text=True, env=ENV, timeout=240
    )


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import matteflow.core.imageio  # noqa: F401  (registers the HEIC plugin this fixture saves with)

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for name in ("a.jpg", "b.png", "nested/c.webp", "d.heic", "e.avif"):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    (folder / "broken.png").write_text("a text file named .png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "._a.jpg").write_bytes(b"\0\5\26\7 macOS resource fork")  # hidden: never taken from a folder
    return folder


def test_folder_with_bad_files(photo_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("matte", str(photo_folder), "-o", str(out), "--mask", "-q")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("matteflow: error:")]
    assert len(error_lines) == 2
    assert any("broken.png" in line and "not a supported image" in line for line in error_lines)
    assert any("empty.jpg" in line and "empty file" in line for line in error_lines)
    for stem in ("a", "b", "nested/c", "d", "e"):  # d: an iPhone's HEIC, e: AVIF
        image = Image.open(out / f"{stem}.png")
        assert image.mode == "RGBA" and image.size == (120, 90)
        assert Image.open(out / f"{stem}_mask.png").mode == "L"
    assert not (out / "notes.png").exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_permissions_the_umask_gives(photo_folder: Path, tmp_path: Path, umask: int) -> None:
    """Written through a private temp file and renamed, yet readable as any file the user writes: a cut-out
    only its writer may read is no use to the web server or colleague who reads the folder next."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "matteflow", "matte", str(photo_folder / "a.jpg"), "-o", str(out), "--mask"]
    assert subprocess.run(command, capture_output=True, env=ENV, timeout=240, umask=umask).returncode == 0
    for name in ("a.png", "a_mask.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_resume_skips_done_outputs_unless_overwrite(photo_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = photo_folder / "a.jpg"
    assert run_cli("matte", str(source), "-o", str(out), "-q").returncode == 0
    target = out / "a.png"
    target.write_bytes(b"sentinel")  # a resumed run must not touch a finished output
    assert run_cli("matte", str(source), "-o", str(out), "-q").returncode == 0
    assert target.read_bytes() == b"sentinel"
    assert run_cli("matte", str(source), "-o", str(out), "-q", "--overwrite").returncode == 0
    assert Image.open(io.BytesIO(target.read_bytes())).format == "PNG"


def test_preset_writes_jpeg_on_white(photo_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("matte", str(photo_folder / "b.png"), "-o", str(out), "--preset", "id-photo", "--max-side", "60")
    assert result.returncode == 0, result.stderr
    image = Image.open(out / "b.jpg")
    assert image.format == "JPEG" and image.size == (60, 45)


@pytest.mark.parametrize(
    "args",
    [["--format", "gif"], ["--background", "pink"], ["--alpha-threshold", "300"], ["--frobnicate"], []],
)
def test_usage_errors_exit_2(photo_folder: Path, tmp_path: Path, args: list[str]) -> None:
    argv = ["matte", str(photo_folder / "a.jpg"), *args]
    if args:
        argv += ["-o", str(tmp_path)]
    result = run_cli(*argv)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


def test_a_background_image_is_put_behind_every_cut_out(photo_folder: Path, tmp_path: Path) -> None:
    # A flat backdrop (of another size and shape than the photos) gives exactly what that colour gives.
    backdrop = tmp_path / "backdrop.jpg"
    Image.new("RGB", (300, 500), (10, 200, 30)).save(backdrop, quality=100)
    flat = np.asarray(Image.open(backdrop))[150, 150]
    colour = "#{:02x}{:02x}{:02x}".format(*flat)
    photo = str(photo_folder / "a.jpg")
    assert run_cli("matte", photo, "-o", str(tmp_path / "img"), "--background-image", str(backdrop)).returncode == 0
    assert run_cli("matte", photo, "-o", str(tmp_path / "col"), "--background", colour).returncode == 0
    over_image, over_colour = Image.open(tmp_path / "img" / "a.png"), Image.open(tmp_path / "col" / "a.png")
    assert over_image.mode == "RGB" and over_image.size == (120, 90)
    assert np.array_equal(np.asarray(over_image), np.asarray(over_colour))

    (tmp_path / "text.png").write_text("not a picture")
    for extra, message in (
        (["--background-image", str(tmp_path / "text.png")], "--background-image"),
        (["--background-image", str(tmp_path / "missing.jpg")], "cannot read"),
        (["--background-image", str(backdrop), "--background", "#ffffff"], "not both"),
    ):
        refused = run_cli("matte", photo, "-o", str(tmp_path / "no"), *extra)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "no").exists()


def test_web_addresses_among_the_inputs(photo_folder: Path, tmp_path: Path) -> None:
    """An image's address is read by the CLI itself (a local server is the user's to read), named after the
    address's last part; a dead one fails alone with its reason."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(photo_folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        out, report = tmp_path / "out", tmp_path / "report.json"
        result = run_cli("matte", f"{base}/a.jpg", f"{base}/missing.jpg", "-o", str(out), "-q", "--report", str(report))
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{base}/missing.jpg: could not fetch the image" in result.stderr and "HTTP 404" in result.stderr
    assert Image.open(out / "a.png").size == (120, 90)
    entries = {entry["name"]: entry["state"] for entry in json.loads(report.read_text())["items"]}
    assert entries == {f"{base}/a.jpg": "done", f"{base}/missing.jpg": "failed"}
    malformed = run_cli("matte", "https://", "-o", str(out))
    assert malformed.returncode == 2 and "must be an http(s) URL with a host" in malformed.stderr


def test_inputs_listed_in_a_file_and_on_standard_input(photo_folder: Path, tmp_path: Path) -> None:
    """``--from FILE`` / ``--from -``: one input per line as a pipeline writes them (comments and blank lines
    skipped), beside the inputs on the command line."""
    listing = tmp_path / "list.txt"
    listing.write_text(f"# tonight's photos\n\n{photo_folder / 'a.jpg'}\n  {photo_folder / 'nested'}  \r\n")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "matteflow", "matte", "--from", str(listing), "--from", "-", "-o", str(out), "-q"],
        input=f"{photo_folder / 'b.png'}\n",
        capture_output=True,
        text=True,
        env=ENV,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.rglob("*.png")) == ["a.png", "b.png", "c.png"]

    nothing = subprocess.run(
        [sys.executable, "-m", "matteflow", "matte", "--from", "-", "-o", str(out)],
        input="# no inputs today\n",
        capture_output=True,
        text=True,
        env=ENV,
        timeout=240,
    )
    assert nothing.returncode == 1 and "no inputs listed in --from -" in nothing.stderr
    for bad, words in (
        ([], "give at least one INPUT"),
        (["--from", str(tmp_path / "nope.txt")], "cannot read: No such file"),
        (["--from", str(photo_folder / "a.jpg")], "is not UTF-8 text"),
    ):
        usage = run_cli("matte", *bad, "-o", str(out))
        assert usage.returncode == 2 and words in usage.stderr, usage.stderr
    bad_line = tmp_path / "bad.txt"
    bad_line.write_text("https://\n")
    usage = run_cli("matte", "--from", str(bad_line), "-o", str(out))
    assert usage.returncode == 2 and "must be an http(s) URL with a host" in usage.stderr


def test_an_output_named_like_an_image_is_that_file(photo_folder: Path, tmp_path: Path) -> None:
    """``-o cut.png`` with one input writes cut.png (as rembg's ``i``), in the format of its suffix; it used to
    make a folder called cut.png. An existing folder of that name is still a folder."""
    result = run_cli("matte", str(photo_folder / "a.jpg"), "-o", str(tmp_path / "cut.webp"), "--mask", "-q")
    assert result.returncode == 0, result.stderr
    cut = Image.open(tmp_path / "cut.webp")
    assert cut.format == "WEBP" and cut.mode == "RGBA" and cut.size == (120, 90)
    assert Image.open(tmp_path / "cut_mask.png").mode == "L"
    again = run_cli("matte", str(photo_folder / "b.png"), "-o", str(tmp_path / "cut.webp"), "-q")
    assert again.returncode == 0 and "skipped" not in again.stderr  # the file named is written again
    (tmp_path / "looks.png").mkdir()
    assert run_cli("matte", str(photo_folder / "a.jpg"), "-o", str(tmp_path / "looks.png"), "-q").returncode == 0
    assert (tmp_path / "looks.png" / "a.png").is_file()
    for bad, words in (
        ([str(photo_folder / "a.jpg"), str(photo_folder / "b.png")], "give exactly one input image"),
        ([str(photo_folder)], "give exactly one input image"),
        ([str(photo_folder / "a.jpg"), "--format", "jpeg"], "does not match the output file"),
    ):
        usage = run_cli("matte", *bad, "-o", str(tmp_path / "one.png"))
        assert usage.returncode == 2 and words in usage.stderr, usage.stderr
