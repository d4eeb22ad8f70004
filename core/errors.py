"""The error hierarchy of the matting library.

Mapped once to HTTP status codes (web) and once to retry / do-not-retry (workers): every subclass of
:class:`InputError` is the caller's fault and never worth a retry.
"""


class MattingError(Exception):
    """Base class of every error MatteFlow raises on purpose."""


class InputError(MattingError):
    """The input (an image or an option) is bad; retrying cannot help."""


class InvalidImageError(InputError):
    """The bytes are not a decodable image (empty, truncated, not an image, unsupported mode)."""


class ImageTooLargeError(InputError):
    """The image has more pixels than the configured limit (checked from the header, before decoding)."""


class InvalidOptionError(InputError):
    """An option has an unknown name or a value outside its allowed range."""


class ModelError(MattingError):
    """The model cannot be found, loaded or run (a deployment problem, not the input's fault)."""


SHOWN_MAX_CHARS = 64


def shown(value: object, limit: int = SHOWN_MAX_CHARS) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters: messages echo what the caller
    sent, and a 10,000-character value must not come back whole (nor fill a log line)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(str(value)):,} characters)"
