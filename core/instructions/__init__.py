"""Natural-language instructions ("把这张照片换成蓝底证件照", "PNG for a slide") -> matting options.

``resolve_options(explicit, instruction)`` is the one entry point the CLI, the web API and ``remove()`` use:
the offline interpreter (jieba + a lexicon and a small grammar; no network) reads the instruction, an
optional OpenAI-compatible LLM helps with what it did not understand, and explicit options win over both.
"""

from .llm import LlmConfig, LlmError
from .model import Interpretation, Match
from .offline import interpret_offline
from .resolve import MAX_INSTRUCTION_CHARS, Resolved, explain, interpret, resolve_options

__all__ = [
    "MAX_INSTRUCTION_CHARS",
    "Interpretation",
    "LlmConfig",
    "LlmError",
    "Match",
    "Resolved",
    "explain",
    "interpret",
    "interpret_offline",
    "resolve_options",
]
