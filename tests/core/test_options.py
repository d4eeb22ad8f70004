from __future__ import annotations

import pytest

from matteflow.core.errors import InvalidOptionError
from matteflow.core.options import PRESETS, MatteOptions, parse_options


def test_defaults_are_a_transparent_png() -> None:
    options = parse_options()
    assert options == MatteOptions()
    assert options.background is None and options.format == "png" and options.extension == "png"


def test_presets_match_the_seeds() -> None:
    id_photo = parse_options(preset="id-photo")
    assert id_photo.format == "jpeg" and id_photo.background == (255, 255, 255)
    assert 15 <= id_photo.alpha_threshold <= 20 and id_photo.erode == 2
    ecommerce = parse_options(preset="ecommerce")
    assert ecommerce.background is None and ecommerce.format == "png"
    assert ecommerce.alpha_threshold == 10 and ecommerce.refine and not ecommerce.feather  # the edge is solved
    marketplace = parse_options(preset="marketplace")
    assert marketplace.background == (255, 255, 255) and marketplace.refine and marketplace.crop == "square"
    avatar = parse_options(preset="avatar")
    assert 5 <= avatar.alpha_threshold <= 8 and avatar.erode in (0, 1) and avatar.refine
    assert {"id-photo", "ecommerce", "avatar"} <= set(PRESETS)


def test_id_size_presets_crop_on_white_and_keep_only_the_person() -> None:
    options = parse_options(preset="id-2inch")
    assert options.id_size == "2inch" and options.keep == "main" and options.format == "jpeg"
    assert options.background == (255, 255, 255)
    assert parse_options(preset="id-2inch", background="#438edb").id_size == "2inch"


def test_new_options_are_validated() -> None:
    assert parse_options(keep="MAIN").keep == "main" and parse_options().keep == "all"
    assert parse_options(max_kb="200").max_kb == 200 and parse_options(max_kb="none").max_kb is None
    assert parse_options(id_size="35x45").id_size == "35x45"
    for bad in ({"keep": "some"}, {"id_size": "3inch"}, {"max_kb": "0"}, {"max_kb": "lots"}):
        with pytest.raises(InvalidOptionError, match=next(iter(bad))):
            parse_options(bad)
    round_trip = parse_options(preset="passport-2x2in", max_kb=300)
    assert parse_options(round_trip.to_dict()) == round_trip


def test_crop_options_are_validated() -> None:
    assert parse_options().crop == "none" and parse_options().crop_margin == 0
    options = parse_options(crop="Square", crop_margin="12")
    assert options.crop == "square" and options.crop_margin == 12
    assert parse_options(options.to_dict()) == options
    marketplace = parse_options(preset="marketplace")
    assert marketplace.crop == "square" and marketplace.background == (255, 255, 255) and marketplace.format == "jpeg"
    assert parse_options(preset="marketplace", crop="subject", crop_margin=0).crop_margin == 0
    # What the caller sets wins over the preset's crop: no contradiction of the caller's making.
    uncropped = parse_options(preset="marketplace", crop="none")
    assert uncropped.crop == "none" and uncropped.crop_margin == 0 and uncropped.background == (255, 255, 255)
    assert parse_options(preset="marketplace", id_size="2inch").crop == "none"
    for bad, message in (
        ({"crop": "circle"}, "crop must be one of none, subject, square"),
        ({"crop": "subject", "crop_margin": "101"}, "crop_margin must be from 0 to 100"),
        ({"crop_margin": "5"}, "crop_margin is the margin of a crop"),
        ({"crop": "square", "id_size": "2inch"}, "crop and id_size both frame the output"),
        ({"preset": "passport-2x2in", "crop": "subject"}, "crop and id_size"),
    ):
        with pytest.raises(InvalidOptionError, match=message):
            parse_options(bad)


def test_output_size_is_parsed_and_bounded() -> None:
    assert parse_options().output_size is None and parse_options(output_size="none").output_size is None
    assert parse_options(output_size="1000x800").output_size == (1000, 800)
    assert parse_options(output_size=" 800 ").output_size == (800, 800)  # one number: a square
    assert parse_options(output_size=[640, 480]).output_size == (640, 480)
    options = parse_options(output_size="1600x1600", crop="square")
    assert options.to_dict()["output_size"] == "1600x1600" and parse_options(options.to_dict()) == options
    for bad in ("big", "0x100", "100x", "6000x100", "15", "-5x5"):
        with pytest.raises(InvalidOptionError, match="output_size must be WIDTHxHEIGHT"):
            parse_options(output_size=bad)
    with pytest.raises(InvalidOptionError, match="output_size and id_size both frame the output"):
        parse_options(output_size="800", id_size="2inch")


def test_a_background_image_replaces_the_colour() -> None:
    options = parse_options(background_image="true")
    assert options.background_image and options.background is None and parse_options(options.to_dict()) == options
    # JPEG and print sheets are opaque over a photo too: no white put in, no refusal.
    assert parse_options(background_image=True, format="jpeg").background is None
    assert parse_options(background_image=True, preset="id-2inch", sheet=True).sheet
    # A preset's colour yields to the photo; a colour the caller named as well is a contradiction.
    assert parse_options(background_image=True, preset="marketplace").background is None
    with pytest.raises(InvalidOptionError, match="a background colour or a background image, not both"):
        parse_options(background_image=True, background="#ffffff")
    assert parse_options(background_image=True, background="transparent").background_image


def test_explicit_options_override_a_preset() -> None:
    options = parse_options({"preset": "id-photo", "background": "#00ff00", "erode": "0", "format": "png"})
    assert options.background == (0, 255, 0) and options.erode == 0 and options.format == "png"
    assert options.alpha_threshold == PRESETS["id-photo"]["alpha_threshold"]


def test_form_strings_are_parsed() -> None:
    options = parse_options(
        {
            "alpha_threshold": "12",
            "feather": "true",
            "mask": "1",
            "max_side": "1024",
            "format": "JPG",
            "background": "ABCDEF",
        }
    )
    assert options.alpha_threshold == 12 and options.feather and options.mask
    assert options.max_side == 1024 and options.format == "jpeg" and options.background == (0xAB, 0xCD, 0xEF)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"preset": "wedding"}, "preset must be one of"),
        ({"format": "gif"}, "format must be one of"),
        ({"background": "pink"}, "background must be"),
        ({"alpha_threshold": "256"}, "alpha_threshold must be from 0 to 255"),
        ({"alpha_threshold": "soft"}, "alpha_threshold must be a whole number"),
        ({"erode": -1}, "erode must be from 0"),
        ({"feather": "maybe"}, "feather must be true or false"),
        ({"refine": "hair"}, "refine must be true or false"),
        ({"max_side": 8}, "max_side must be from 16"),
        ({"colour": "#fff"}, "unknown option"),
        ({"format": "jpeg", "background": "transparent"}, "jpeg cannot be transparent"),
    ],
)
def test_bad_values_name_the_option(values: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        parse_options(values)


def test_jpeg_without_a_background_gets_white() -> None:
    assert parse_options(format="jpeg").background == (255, 255, 255)
    assert parse_options(preset="ecommerce", format="jpeg").background == (255, 255, 255)


def test_refine_is_off_unless_asked_and_goes_with_any_preset() -> None:
    assert parse_options().refine is False
    assert parse_options({"refine": "true"}).refine is True
    assert parse_options(preset="avatar", refine=False).refine is False  # the avatar preset's, switched off
    options = parse_options(preset="marketplace", refine=True)
    assert options.refine and options.background == (255, 255, 255) and options.crop == "square"


def test_to_dict_round_trips() -> None:
    options = parse_options(preset="avatar", background="#102030", max_side=800, mask=True, refine=True)
    assert parse_options(options.to_dict()) == options
