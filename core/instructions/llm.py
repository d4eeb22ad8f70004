"""The optional LLM interpreter: any OpenAI-compatible chat-completions endpoint (hosted DeepSeek, a local
llama.cpp or Ollama server), asked for JSON in the option schema.

Used only when configured (``MATTEFLOW_LLM_URL`` and ``MATTEFLOW_LLM_MODEL``) and only for an instruction
the offline interpreter did not fully understand. Its answer is validated by the same option parser; on a
timeout, an HTTP or network error, or JSON that does not fit, the offline answer stands and says why.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidOptionError
from ..idsizes import ID_SIZES
from ..options import KEEP_CHOICES, OPTION_NAMES, PRESETS, parse_options
from .lexicon import COLOURS
from .model import Interpretation, Match


@dataclass(frozen=True)
class LlmConfig:
    """Where to ask: ``url`` is the API base (``.../v1``) or the full ``.../chat/completions`` URL."""

    url: str
    model: str
    api_key: str = ""
    timeout_s: float = 10.0

    @classmethod
    def from_values(cls, url: str, model: str, api_key: str = "", timeout_s: float = 10.0) -> LlmConfig | None:
        """A config when both URL and model are set, else None (nothing is ever sent)."""
        if not url.strip() or not model.strip():
            return None
        return cls(url.strip(), model.strip(), api_key.strip(), timeout_s)

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


class LlmError(Exception):
    """The LLM could not give a usable answer (network, HTTP status, timeout, bad JSON, invalid options)."""


def system_prompt() -> str:
    presets = ", ".join(PRESETS)
    colours = ", ".join(f"{name} {hex_value}" for hex_value, name in COLOURS.items())
    sizes = "; ".join(f"{s.name} = {s.label_en}" for s in ID_SIZES.values())
    return (
        "You turn a user's request about a background-removal job (Chinese or English) into JSON options.\n"
        "Reply with ONE JSON object and nothing else: "
        '{"options": {...}, "mapped": [{"text": "<words of the request>", "options": {...}}], '
        '"not_understood": ["<words you could not map>"]}.\n'
        "Allowed options (omit what the request does not ask for):\n"
        f"- preset: one of {presets} (id-*/passport-* crop a real ID photo of that size)\n"
        f"- id_size: one of {', '.join(ID_SIZES)} ({sizes})\n"
        f"- background: 'transparent' or '#rrggbb' (known: {colours})\n"
        "- format: png, jpeg or webp\n"
        "- alpha_threshold: 0-255 (higher removes more haze); erode: 0-64 pixels (shrinks the edge)\n"
        "- feather: true/false (soft edge); max_side: pixels of the long side; mask: true/false\n"
        "- refine: true when the request asks for fine hair, fur or precise edges (slower)\n"
        "- shadow: true/false (a soft floor shadow under the subject, catalogue style)\n"
        f"- keep: {' or '.join(KEEP_CHOICES)} (main = keep only the main person, drop clutter)\n"
        "- max_kb: the largest file size in KB\n"
        "- crop: none, subject (trim to the subject) or square (subject centred on a square); crop_margin: 0-100, "
        "room around the subject in percent of its long side (only with crop; not with id_size); output_size: "
        "'WIDTHxHEIGHT' pixels every result is scaled to\n"
        "- model: 'ensemble' when the request asks for the best quality over speed\n"
    )


def _extract_json(content: str) -> dict[str, Any]:
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", content, re.DOTALL)
    text = fenced.group(1) if fenced else content[content.find("{") : content.rfind("}") + 1]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LlmError(f"the reply is not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise LlmError("the reply is not a JSON object")
    return data


def _validated(options: Any) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise LlmError("'options' is missing or not an object")
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise LlmError(f"unknown option(s) {', '.join(unknown)}")
    try:
        parse_options(options)
    except InvalidOptionError as exc:
        raise LlmError(f"invalid options: {exc}") from None
    return {k: v for k, v in options.items() if v is not None}


def ask_llm(instruction: str, config: LlmConfig) -> Interpretation:
    """Ask the endpoint; raise :class:`LlmError` for anything short of valid options."""
    body = {
        "model": config.model,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": system_prompt()},
            {"role": "user", "content": instruction},
        ],
    }
    headers = {"Content-Type": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    request = urllib.request.Request(config.endpoint, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_s) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise LlmError(f"HTTP {exc.code} from {config.endpoint}") from None
    except TimeoutError:
        raise LlmError(f"no answer within {config.timeout_s:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise LlmError(f"no answer within {config.timeout_s:g} s") from None
        raise LlmError(f"cannot reach {config.endpoint}: {reason}") from None
    except (OSError, ValueError) as exc:
        raise LlmError(f"bad response from {config.endpoint}: {exc}") from None
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise LlmError("the response has no choices[0].message.content") from None
    data = _extract_json(str(content))
    options = _validated(data.get("options"))
    matches = []
    for item in data.get("mapped") or []:
        if isinstance(item, dict) and isinstance(item.get("options"), dict):
            values = {k: v for k, v in item["options"].items() if k in options}
            matches.append(Match(str(item.get("text", "")), values, ", ".join(f"{k} {v}" for k, v in values.items())))
    if not matches and options:
        matches.append(Match(instruction, dict(options), "read by the LLM"))
    not_understood = [str(w) for w in data.get("not_understood") or [] if str(w).strip()]
    return Interpretation(
        instruction=instruction,
        options=options,
        matches=matches,
        not_understood=not_understood,
        interpreter="llm",
    )
