"""The compatibility endpoints in the server's OpenAPI document (``/api/v1/openapi.json``)."""

from __future__ import annotations

from typing import Any

from . import rembg, removebg

_BINARY = {"type": "string", "format": "binary"}
_TEXT = {"type": "string"}
_FLAG = {"type": "boolean"}


def _enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _removebg_fields() -> dict[str, Any]:
    return {
        "image_file": _BINARY,
        "image_file_b64": _TEXT,
        "image_url": _TEXT,
        "size": {
            **_enum(removebg.SIZES),
            "description": "preview 0.25 MP, medium 1.5 MP, hd 4 MP; full/auto: "
            "the photo's size (the default here: no credits to save)",
        },
        "type": {
            **_enum(removebg.TYPES),
            "description": "person runs the people model, the others the general model, auto the server's default",
        },
        "type_level": _enum(removebg.TYPE_LEVELS),
        "format": _enum(removebg.FORMATS),
        "channels": _enum(removebg.CHANNELS),
        "bg_color": {**_TEXT, "description": "hex (81d4fa, fff) or a colour name; opaque only"},
        "bg_image_file": _BINARY,
        "bg_image_url": _TEXT,
        "crop": _FLAG,
        "crop_margin": {**_TEXT, "description": "one margin in percent of the subject, e.g. 10%"},
        "add_shadow": _FLAG,
        "semitransparency": _FLAG,
        **{name: {**_TEXT, "description": f"{defaults[0]!r} only"} for name, defaults in removebg.DEFAULT_ONLY.items()},
    }


def _removebg_errors() -> dict[str, Any]:
    body = {"application/json": {"schema": {"type": "object", "properties": {"errors": {"type": "array"}}}}}
    return {
        "400": {"description": "Bad input or parameters, with remove.bg's error codes.", "content": body},
        "403": {"description": "A key this server does not have (where it has MATTEFLOW_API_KEYS).", "content": body},
        "429": {"description": "Every single-image slot is taken: retry after Retry-After seconds.", "content": body},
        "503": {"description": "The job store (Redis) is unreachable (unavailable).", "content": body},
        "504": {"description": "No worker finished the image in time (timeout).", "content": body},
    }


def _rembg_query(with_url: bool) -> list[dict[str, Any]]:
    names = ("url", *rembg.FORM_PARAMS, *rembg.QUERY_PARAMS) if with_url else rembg.QUERY_PARAMS
    return [{"name": name, "in": "query", "required": name == "url", "schema": _TEXT} for name in names]


def compat_paths() -> dict[str, Any]:
    png = {"image/png": {"schema": _BINARY}}
    rembg_errors = {
        "400": {"description": "Bad parameters, no image, an image URL this server may not read."},
        "413": {"description": "A body over MATTEFLOW_MAX_UPLOAD_MB, or an image over MATTEFLOW_MAX_PIXELS."},
        "422": {"description": "Not a decodable image, or the URL gave no image (image_fetch_failed)."},
        "503": {"description": "Every single-image slot is taken (busy, with Retry-After), or Redis is down."},
        "504": {"description": "No worker finished the image in time."},
    }
    return {
        "/v1.0/removebg": {
            "post": {
                "summary": "remove.bg-compatible: cut out one image",
                "description": "remove.bg's API (point a remove.bg client at /v1.0 of this server): the same "
                "parameters, headers (X-Width, X-Height, X-Foreground-*, X-Type) and error shape; JSON answer "
                "{data: {result_b64, foreground_*}} for Accept: application/json. Runs as POST /api/v1/matte.",
                "operationId": "removebgCompatible",
                "tags": ["compatibility"],
                "requestBody": {
                    "required": True,
                    "content": {
                        media: {"schema": {"type": "object", "properties": _removebg_fields()}}
                        for media in ("multipart/form-data", "application/x-www-form-urlencoded", "application/json")
                    },
                },
                "responses": {
                    "200": {
                        "description": "The result (PNG, JPEG, or ZIP of color.jpg and alpha.png).",
                        "content": {**png, "image/jpeg": {"schema": _BINARY}, "application/zip": {"schema": _BINARY}},
                    },
                    **_removebg_errors(),
                },
            }
        },
        "/api/remove": {
            "post": {
                "summary": "rembg-compatible: cut out one image sent in 'file'",
                "description": "The rembg server's API. model: rembg's names (person models run the people "
                "model, the others the general one) or auto/people/general/ensemble; a: edge refinement; om: the "
                "mask only; ppm: feathering; bgc: r,g,b,a. af/ab/ae are checked, without effect.",
                "operationId": "rembgCompatible",
                "tags": ["compatibility"],
                "parameters": _rembg_query(with_url=False),
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {"file": _BINARY, **dict.fromkeys(rembg.FORM_PARAMS, _TEXT)},
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "The result PNG.", "content": png}, **rembg_errors},
            },
            "get": {
                "summary": "rembg-compatible: cut out the image at 'url'",
                "description": "As POST, with the image read from url (only hosts in MATTEFLOW_FETCH_HOSTS).",
                "operationId": "rembgCompatibleUrl",
                "tags": ["compatibility"],
                "parameters": _rembg_query(with_url=True),
                "responses": {"200": {"description": "The result PNG.", "content": png}, **rembg_errors},
            },
        },
    }
