"""``POST /api/v1/instructions:parse``: what an instruction would become, without running anything.

A dry run for the page's Confirm / Edit step and for API users: JSON or form fields ``instruction`` (words,
中文 or English), any explicit options (they win), and ``lang`` (``en`` or ``zh``) for the explanation.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from matteflow.core.instructions import LlmConfig, resolve_options

from .context import web_context
from .errors import ApiError

bp = Blueprint("instructions", __name__, url_prefix="/api/v1")


def llm_config() -> LlmConfig | None:
    """The LLM interpreter from the app's settings, or None when it is not configured (nothing is sent)."""
    settings = web_context().settings
    return LlmConfig.from_values(settings.llm_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout_s)


@bp.post("/instructions:parse")
def parse_instruction() -> Response:
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "bad_json", 'send a JSON object like {"instruction": "蓝底二寸证件照"}')
        fields: dict[str, Any] = dict(body)
    else:
        fields = {**request.args.to_dict(), **request.form.to_dict()}
    instruction = str(fields.pop("instruction", "") or "").strip()
    lang = str(fields.pop("lang", "") or "").strip().lower() or None
    if lang not in (None, "en", "zh"):
        raise ApiError(400, "invalid_option", f"lang must be en or zh, got {lang!r}")
    if not instruction:
        raise ApiError(400, "no_instruction", "send the words to read in the field 'instruction'")
    explicit = {k: v for k, v in fields.items() if v is not None and str(v).strip() != ""}
    resolved = resolve_options(explicit, instruction, llm_config(), web_context().settings.default_model)
    return jsonify(resolved.to_dict(lang))
