"""`matteflow matte --say TEXT`: words in, a real ID photo out; the explanation on stderr; usage errors exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

PORTRAIT = Path(__file__).parent / "data" / "portraits" / "astronaut.jpg"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MATTEFLOW_LLM")}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "matteflow", *args], capture_output=True, text=True, env=ENV, timeout=240
    )


def test_say_makes_a_blue_two_inch_id_photo(tmp_path: Path) -> None:
    result = run_cli("matte", str(PORTRAIT), "-o", str(tmp_path), "--say", "蓝底二寸证件照", "-q")
    assert result.returncode == 0, result.stderr
    assert "已识别：蓝底 → 背景 证件蓝 #438edb" in result.stderr and "413×579" in result.stderr
    image = Image.open(tmp_path / "astronaut.jpg")
    assert image.size == (413, 579) and image.info["dpi"] == pytest.approx((300, 300), abs=0.5)
    r, g, b = image.convert("RGB").getpixel((3, 3))
    assert abs(r - 0x43) <= 6 and abs(g - 0x8E) <= 6 and abs(b - 0xDB) <= 6


def test_explicit_flags_win_over_say_and_it_is_said(tmp_path: Path) -> None:
    result = run_cli("matte", str(PORTRAIT), "-o", str(tmp_path), "--say", "white background jpg", "--format", "png")
    assert result.returncode == 0, result.stderr
    assert "explicit format=png wins over jpeg" in result.stderr
    assert Image.open(tmp_path / "astronaut.png").mode == "RGB"  # on white, as said: no alpha channel


def test_contradicting_say_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("matte", str(PORTRAIT), "-o", str(tmp_path), "--say", "transparent jpg")
    assert result.returncode == 2
    assert "jpeg cannot be transparent" in result.stderr and "Traceback" not in result.stderr
