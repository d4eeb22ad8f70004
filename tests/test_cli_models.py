"""`matteflow matte --model/--report` as a user runs it: a real subprocess on real files and the shipped models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).resolve().parent / "data"
PERSON = DATA / "people" / "000000522418.jpg"  # auto combines both networks here (the people model is unsure)
PORTRAIT = DATA / "portraits" / "astronaut.jpg"  # a confident result (0.7)
FLOWER = DATA / "objects" / "flower.jpg"
SHIPPED = Path(__file__).resolve().parent.parent / "models"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MATTEFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "matteflow", "matte", *args, "-q"],
        capture_output=True,
        text=True,
        env={**environ, **env},
        timeout=240,
    )


def read_report(path: Path) -> dict:
    return json.loads(path.read_text())


def test_unknown_model_is_a_usage_error_listing_the_names(tmp_path: Path) -> None:
    result = run_cli(str(PERSON), "-o", str(tmp_path / "out"), "--model", "resnet")
    assert result.returncode == 2
    assert "auto, people, general" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_auto_reports_the_model_and_confidence_per_input(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a photo")
    result = run_cli(str(PERSON), str(FLOWER), str(broken), "-o", str(tmp_path / "out"), "--report", str(report))
    assert result.returncode == 1, result.stderr  # the broken input, named on stderr; the others are done
    body = read_report(report)
    assert (body["done"], body["failed"], body["options"]["model"]) == (2, 1, "auto")
    by_name = {Path(item["name"]).name: item for item in body["items"]}
    assert [Path(item["name"]).name for item in body["items"]] == [PERSON.name, FLOWER.name, "broken.jpg"]
    assert by_name[PERSON.name]["model"] == "ensemble" and by_name[FLOWER.name]["model"] == "general"
    for name in (PERSON.name, FLOWER.name):
        assert by_name[name]["state"] == "done" and by_name[name]["error"] is None
        assert 0.0 <= by_name[name]["confidence"] <= 1.0
        assert Path(by_name[name]["output"]).is_file()
    assert by_name["broken.jpg"]["state"] == "failed" and by_name["broken.jpg"]["error"]
    assert by_name["broken.jpg"]["model"] is None

    # A second run skips what is done, and says so.
    again = run_cli(str(PERSON), "-o", str(tmp_path / "out"), "--report", str(report))
    assert again.returncode == 0, again.stderr
    assert read_report(report)["items"][0]["state"] == "skipped"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--preset", "ecommerce"], "ensemble"),  # auto: a person photo is never the general model's alone
        (["--preset", "ecommerce", "--model", "general"], "general"),
        (["--preset", "ecommerce", "--model", "default"], "people"),
        (["--model", f"onnx:{SHIPPED / 'general-u2netp.onnx'}"], "people"),  # a file named runs on every image
    ],
)
def test_preset_and_model_flags_choose_the_model(tmp_path: Path, args: list[str], expected: str) -> None:
    report = tmp_path / "report.json"
    result = run_cli(str(PERSON), "-o", str(tmp_path / "out"), "--report", str(report), *args)
    assert result.returncode == 0, result.stderr
    assert read_report(report)["items"][0]["model"] == expected


def test_a_missing_model_file_is_one_clear_error(tmp_path: Path) -> None:
    result = run_cli(str(PERSON), "-o", str(tmp_path / "out"), "--model", f"onnx:{tmp_path / 'missing.onnx'}")
    assert result.returncode == 1
    assert "missing.onnx" in result.stderr and "Traceback" not in result.stderr


def test_the_deployment_default_model_and_the_ensemble(tmp_path: Path) -> None:
    # MATTEFLOW_DEFAULT_MODEL replaces auto where the command names no model; --model still wins.
    report = tmp_path / "report.json"
    group = PERSON.with_name("000000412151.jpg")  # both networks agree on this group
    result = run_cli(str(group), "-o", str(tmp_path / "a"), "--report", str(report), MATTEFLOW_DEFAULT_MODEL="ensemble")
    assert result.returncode == 0, result.stderr
    assert read_report(report)["items"][0]["model"] == "ensemble"
    args = ("-o", str(tmp_path / "b"), "--report", str(report), "--model", "people")
    result = run_cli(str(group), *args, MATTEFLOW_DEFAULT_MODEL="ensemble")
    assert result.returncode == 0, result.stderr
    assert read_report(report)["items"][0]["model"] == "people"
    bad = run_cli(str(PERSON), "-o", str(tmp_path / "c"), MATTEFLOW_DEFAULT_MODEL="resnet")
    assert bad.returncode == 2 and bad.stderr.startswith("matteflow: error: MATTEFLOW_DEFAULT_MODEL: model must be")


def test_the_run_ends_by_naming_the_cut_outs_worth_a_look(tmp_path: Path) -> None:
    blank = tmp_path / "in" / "blank.png"  # no subject at all: confidence 0
    blank.parent.mkdir()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank)
    report = tmp_path / "report.json"
    result = run_cli(str(PORTRAIT), str(blank), "-o", str(tmp_path / "out"), "--report", str(report))
    assert result.returncode == 0, result.stderr  # worth a look is not a failure
    lines = [line for line in result.stderr.splitlines() if "may need a look" in line]
    assert len(lines) == 1 and lines[0].startswith("matteflow: 1 of 2 cut-outs may need a look (confidence below 0.5)")
    assert str(blank) in lines[0] and str(PORTRAIT) not in lines[0] and "--model general" in lines[0]
    by_name = {Path(item["name"]).name: item for item in read_report(report)["items"]}
    assert by_name["blank.png"]["confidence"] < 0.5 <= by_name[PORTRAIT.name]["confidence"]

    sure = run_cli(str(PORTRAIT), "-o", str(tmp_path / "again"))
    assert sure.returncode == 0 and "may need a look" not in sure.stderr


def test_crop_trims_each_cut_out_to_its_subject_and_says_when_there_is_none(tmp_path: Path) -> None:
    blank = tmp_path / "in" / "blank.png"
    blank.parent.mkdir()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank)
    out = tmp_path / "out"
    result = run_cli(str(FLOWER), str(blank), "-o", str(out), "--crop", "subject", "--crop-margin", "5", "--mask")
    assert result.returncode == 0, result.stderr
    flower, mask = Image.open(out / "flower.png"), Image.open(out / "flower_mask.png")
    truth = Image.open(DATA / "objects" / "flower_mask.png").convert("L").point(lambda v: 255 if v >= 128 else 0)
    left, top, right, bottom = truth.getbbox()
    # The flower's own extent plus 5 % of it on each side (give or take its soft rim): far less than the photo.
    long_side = max(right - left, bottom - top)
    assert abs(flower.width - (right - left) - 0.1 * long_side) <= 8
    assert abs(flower.height - (bottom - top) - 0.1 * long_side) <= 8
    assert mask.size == flower.size and flower.size < Image.open(FLOWER).size
    assert Image.open(out / "blank.png").size == (320, 240)  # nothing to crop to: the photo is kept whole
    assert f"{blank}: no subject found to crop to: the whole photo was kept" in result.stderr

    listing = run_cli(str(FLOWER), "-o", str(tmp_path / "listing"), "--preset", "marketplace", "--output-size", "1000")
    assert listing.returncode == 0, listing.stderr
    assert Image.open(tmp_path / "listing" / "flower.jpg").size == (1000, 1000)

    contradiction = run_cli(str(FLOWER), "-o", str(out), "--crop-margin", "5")
    assert contradiction.returncode == 2 and "crop_margin is the margin of a crop" in contradiction.stderr


def test_refine_changes_only_the_edge_band_and_keeps_stdout_clean(tmp_path: Path) -> None:
    """--refine solves the edges against the photo: the written alpha differs from the plain run near the
    outline only (the inside stays solid, the far background clear) and pymatting's own chatter never reaches
    stdout, which scripts read."""
    plain = run_cli(str(FLOWER), "-o", str(tmp_path / "plain"), "--report", str(tmp_path / "plain.json"))
    refined = run_cli(str(FLOWER), "-o", str(tmp_path / "refined"), "--refine", "--report", str(tmp_path / "r.json"))
    assert plain.returncode == 0 and refined.returncode == 0, refined.stderr
    assert refined.stdout == plain.stdout
    assert read_report(tmp_path / "r.json")["options"]["refine"] is True
    alpha_plain = np.asarray(Image.open(tmp_path / "plain" / "flower.png").getchannel("A"), np.int16)
    alpha_refined = np.asarray(Image.open(tmp_path / "refined" / "flower.png").getchannel("A"), np.int16)
    changed = np.abs(alpha_refined - alpha_plain) > 8
    assert 0.001 < changed.mean() < 0.15, changed.mean()
    solid, clear = alpha_plain == 255, alpha_plain == 0
    assert (alpha_refined[solid] >= 128).all() and (alpha_refined[clear] < 128).all()
