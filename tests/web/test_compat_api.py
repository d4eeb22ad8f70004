"""The compatibility endpoints (``web/compat``): remove.bg's ``POST /v1.0/removebg`` and the rembg server's
``/api/remove``, answered by the real worker as ``/api/v1/matte`` is, in those services' words.

The session worker runs the untrained test network (a fog over the whole photo), so these tests check what
the endpoints promise (sizes, formats, headers, channels, error codes, which model ran), not cut-out quality.
"""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from matteflow.settings import Settings
from matteflow.web import create_app
from matteflow.web.context import EXTENSION_KEY

from .conftest import encode, portrait
from .helpers import Origin


def removebg_error(response: Any, status: int, code: str) -> str:
    """remove.bg's error shape: ``{"errors": [{"title", "code"}]}``; the title is returned."""
    assert response.status_code == status, response.data
    errors = response.get_json()["errors"]
    assert len(errors) == 1 and errors[0]["code"] == code, errors
    assert errors[0]["title"]
    return errors[0]["title"]


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- remove.bg: refused before any image runs -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({}, "missing_source", "image_url, image_file or image_file_b64"),
        ({"image_file_b64": "x", "image_url": "https://example.com/a.jpg"}, "multiple_sources", "either"),
        ({"image_file_b64": "@@@"}, "failed_to_read_image", "not valid base64"),
        ({"image_file_b64": "aGVsbG8=", "size": "huge"}, "invalid_size", "size must be one of preview"),
        ({"image_file_b64": "aGVsbG8=", "type": "spaceship"}, "invalid_type", "type must be one of auto"),
        ({"image_file_b64": "aGVsbG8=", "format": "gif"}, "invalid_format", "format must be one of auto"),
        ({"image_file_b64": "aGVsbG8=", "channels": "rgb"}, "invalid_channels", "channels must be one of rgba"),
        ({"image_file_b64": "aGVsbG8=", "crop": "maybe"}, "invalid_crop", "crop must be true or false"),
        ({"image_file_b64": "aGVsbG8=", "scale": "50%"}, "invalid_scale", "not supported by this server"),
        ({"image_file_b64": "aGVsbG8=", "roi": "0 0 10px 10px"}, "invalid_roi", "not supported by this server"),
        ({"image_file_b64": "aGVsbG8=", "bg_color": "81d4fa77"}, "invalid_bg_color", "partly transparent"),
        ({"image_file_b64": "aGVsbG8=", "bg_color": "not-a-colour"}, "invalid_bg_color", "hex colour or a colour name"),
        (
            {"image_file_b64": "aGVsbG8=", "bg_color": "fff", "bg_image_url": "https://a.example/b.jpg"},
            "multiple_bg_sources",
            "either",
        ),
        ({"image_file_b64": "aGVsbG8=", "crop": "true", "crop_margin": "30px"}, "invalid_crop_margin", "percent"),
        ({"image_file_b64": "aGVsbG8=", "crop": "true", "crop_margin": "\u00b2%"}, "invalid_crop_margin", "percent"),
        ({"image_file_b64": "aGVsbG8=", "shadow_colour": "red"}, "unknown_parameter", "'shadow_colour'"),
        ({"image_file_b64": "aGVsbG8="}, "failed_to_read_image", "not a supported image"),
        ({"image_url": "http://10.1.2.3/photo.jpg"}, "invalid_image_url", "MATTEFLOW_FETCH_HOSTS"),
        ({"image_file": "text where a file belongs"}, "invalid_image_file", "must be sent as a file"),
    ],
)
def test_removebg_refuses_bad_requests_in_removebg_words(
    client: FlaskClient, fields: dict[str, str], code: str, words: str
) -> None:
    for body in ({"data": fields}, {"json": fields}):  # multipart/form fields and a JSON body alike
        title = removebg_error(client.post("/v1.0/removebg", **body), 400, code)
        assert words in title, title


def test_removebg_checks_keys_only_where_the_server_has_them(
    web_settings: Settings, job_client: Any, samples: Any
) -> None:
    keyed = create_app(web_settings.replace(api_keys="key-one"), job_client).test_client()
    sent = {"image_file": (io.BytesIO(samples.text), "a.jpg")}
    removebg_error(keyed.post("/v1.0/removebg", data=sent, headers={"X-Api-Key": "wrong"}), 403, "auth_failed")
    # The right key (or none) gets as far as reading the image; a server without keys ignores a client's key.
    sent = {"image_file": (io.BytesIO(samples.text), "a.jpg")}
    removebg_error(
        keyed.post("/v1.0/removebg", data=sent, headers={"X-Api-Key": "key-one"}), 400, "failed_to_read_image"
    )
    unkeyed = create_app(web_settings.replace(api_keys=""), job_client).test_client()
    sent = {"image_file": (io.BytesIO(samples.text), "a.jpg")}
    removebg_error(
        unkeyed.post("/v1.0/removebg", data=sent, headers={"X-Api-Key": "remove-bg-key"}), 400, "failed_to_read_image"
    )


def test_removebg_busy_is_429_with_retry_after(app: Any, client: FlaskClient, samples: Any) -> None:
    slots = app.extensions[EXTENSION_KEY].matte_slots
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        response = client.post("/v1.0/removebg", data={"image_file": (io.BytesIO(samples.jpeg), "a.jpg")})
        removebg_error(response, 429, "rate_limit_exceeded")
        assert int(response.headers["Retry-After"]) > 0
    finally:
        for _ in range(taken):
            slots.release()


# --- remove.bg: through the real worker -------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_removebg_answers_the_cut_out_with_removebg_headers(client: FlaskClient) -> None:
    photo = encode(portrait(400, 300, seed=8), "JPEG", quality=90)
    response = client.post(
        "/v1.0/removebg",
        data={"image_file": (io.BytesIO(photo), "shoe.jpg"), "size": "auto", "type": "product"},
        headers={"X-Api-Key": "a remove.bg key"},
    )
    assert response.status_code == 200, response.data
    assert response.mimetype == "image/png"
    result = image_of(response.data)
    assert result.mode == "RGBA" and result.size == (400, 300)
    assert (response.headers["X-Width"], response.headers["X-Height"]) == ("400", "300")
    assert response.headers["X-Type"] == "product" and response.headers["X-MatteFlow-Model"] == "general"
    assert response.headers["X-Credits-Charged"] == "0"
    left, top = int(response.headers["X-Foreground-Left"]), int(response.headers["X-Foreground-Top"])
    width, height = int(response.headers["X-Foreground-Width"]), int(response.headers["X-Foreground-Height"])
    # The foreground box is where the subject is visible (alpha from 10 %), as a crop to it finds it.
    visible = np.argwhere(np.asarray(result.getchannel("A")) >= 26)
    assert (top, left) == tuple(visible.min(axis=0)) and (top + height, left + width) == tuple(visible.max(axis=0) + 1)


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_removebg_sizes_formats_channels_and_json(client: FlaskClient) -> None:
    photo = encode(portrait(1000, 800, seed=9), "PNG")

    def post(**fields: Any) -> Any:
        response = client.post("/v1.0/removebg", data={"image_file": (io.BytesIO(photo), "p.png"), **fields})
        assert response.status_code == 200, response.data
        return response

    preview = image_of(post(size="preview").data)  # remove.bg's preview: at most 0.25 megapixels
    assert preview.width * preview.height <= 250_000 and abs(preview.width / preview.height - 1.25) < 0.01
    assert preview.width >= 555  # and no smaller than needed

    on_red = post(size="medium", bg_color="red")  # opaque: format auto answers a JPEG
    assert on_red.mimetype == "image/jpeg" and image_of(on_red.data).size == (1000, 800)
    corner = np.asarray(image_of(on_red.data).convert("RGB"))[:20, :20].mean(axis=(0, 1))
    original = np.asarray(image_of(photo).convert("RGB"))[:20, :20].mean(axis=(0, 1))
    assert corner[0] > original[0] + 20  # the red backdrop shows through the (untrained) matte

    alpha = post(channels="alpha", size="preview")
    mask = image_of(alpha.data)
    assert alpha.mimetype == "image/png" and mask.mode == "L" and mask.size == preview.size

    packed = post(format="zip", size="preview")
    assert packed.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(packed.data)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        colours, matte = image_of(archive.read("color.jpg")), image_of(archive.read("alpha.png"))
    assert colours.mode == "RGB" and matte.mode == "L" and colours.size == matte.size == preview.size

    as_json = client.post(
        "/v1.0/removebg",
        json={"image_file_b64": base64.b64encode(photo).decode(), "size": "preview", "crop": True},
        headers={"Accept": "application/json"},
    )
    assert as_json.status_code == 200 and as_json.mimetype == "application/json", as_json.data
    data = as_json.get_json()["data"]
    cropped = image_of(base64.b64decode(data["result_b64"]))
    assert cropped.mode == "RGBA" and cropped.size == (data["foreground_width"], data["foreground_height"])
    assert (data["foreground_left"], data["foreground_top"]) == (0, 0)  # cropped to the subject


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_removebg_reads_image_and_backdrop_urls(client: FlaskClient, origin: Origin) -> None:
    response = client.post(
        "/v1.0/removebg",
        json={
            "image_url": f"{origin.url}/photos/a.jpg",
            "bg_image_url": f"{origin.url}/photos/b.jpg",
            "type": "person",
        },
    )
    assert response.status_code == 200, response.data
    assert response.mimetype == "image/jpeg"  # a backdrop makes the result opaque
    assert response.headers["X-Type"] == "person" and response.headers["X-MatteFlow-Model"] == "people"
    missing = client.post("/v1.0/removebg", data={"image_url": f"{origin.url}/missing.jpg"})
    removebg_error(missing, 400, "failed_image_download")
    bad_backdrop = client.post(
        "/v1.0/removebg", data={"image_url": f"{origin.url}/photos/a.jpg", "bg_image_url": f"{origin.url}/missing.jpg"}
    )
    removebg_error(bad_backdrop, 400, "failed_bg_download")


# --- rembg -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("model=sam", "not available here"),
        ("model=u3net", "model must be one of u2net_human_seg"),
        ("bgc=1,2,3", "must be r,g,b,a"),
        ("bgc=0,0,0,128", "alpha must be 255"),
        ("af=300", "af must be a whole number from 0 to 255"),
        ("ae=-1", "ae must be a whole number 0 or more"),
        ("ae=--5", "ae must be a whole number 0 or more"),
        ("bgc=%C2%B2,0,0,255", "must be r,g,b,a"),
        ("bgc=-1,0,0,255", "each from 0 to 255"),
        ("om=perhaps", "om must be true or false"),
        ("extras=%7B%22sam_prompt%22%3A1%7D", "extras"),
        ("colour=red", "unknown rembg parameter"),
    ],
)
def test_rembg_refuses_bad_parameters(client: FlaskClient, samples: Any, query: str, words: str) -> None:
    response = client.post(f"/api/remove?{query}", data={"file": (io.BytesIO(samples.jpeg), "a.jpg")})
    assert response.status_code == 400 and words in response.get_json()["message"], response.data


def test_rembg_needs_an_image(client: FlaskClient) -> None:
    assert client.post("/api/remove", data={}).get_json()["error"] == "no_file"
    assert client.get("/api/remove").get_json()["error"] == "no_file"


@pytest.mark.integration
@pytest.mark.usefixtures("worker")
def test_rembg_posted_and_fetched_images(client: FlaskClient, samples: Any, origin: Origin) -> None:
    sent = client.post("/api/remove", data={"file": (io.BytesIO(samples.jpeg), "a.jpg"), "model": "u2net_human_seg"})
    assert sent.status_code == 200 and sent.mimetype == "image/png", sent.data
    assert image_of(sent.data).mode == "RGBA" and sent.headers["X-MatteFlow-Model"] == "people"

    mask = client.post(
        "/api/remove", data={"file": (io.BytesIO(samples.jpeg), "a.jpg"), "om": "true", "model": "u2net"}
    )
    assert image_of(mask.data).mode == "L" and mask.headers["X-MatteFlow-Model"] == "general"

    coloured = client.post("/api/remove?bgc=0,255,0,255", data={"file": (io.BytesIO(samples.jpeg), "a.jpg")})
    assert coloured.status_code == 200 and image_of(coloured.data).mode == "RGB"

    fetched = client.get(f"/api/remove?url={origin.url}/photos/a.jpg&a=true")
    assert fetched.status_code == 200 and image_of(fetched.data).size == image_of(origin.photo).size
