"""Checking URLs a client names for the server to call (callbacks) or to read (image URLs): the shape rules
both share, so a URL with credentials or a scheme other than http(s) is refused the same way everywhere."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from matteflow.core.errors import InvalidOptionError, shown


def is_url(value: object) -> bool:
    """Whether a command-line input names an image by its web address rather than a file."""
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def split_http_url(url: str, field: str, max_chars: int, credentials_hint: str = "") -> SplitResult:
    """``url`` split, if it is an http(s) URL with a host, no credentials and at most ``max_chars``; else
    :class:`InvalidOptionError` naming ``field`` (``credentials_hint``: what to do instead of credentials)."""
    if len(url) > max_chars:
        raise InvalidOptionError(f"{field} is longer than {max_chars} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise InvalidOptionError(f"{field} is not a URL: {shown(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidOptionError(f"{field} must be an http(s) URL with a host, got {shown(url)}")
    if parts.username or parts.password:
        raise InvalidOptionError(f"{field} must not carry credentials{credentials_hint}")
    return parts


def host_listed(parts: SplitResult, hosts: set[str]) -> bool:
    """Whether the URL's host is in ``hosts``: as ``host``, as ``host:port``, or under a ``.domain`` entry."""
    host = (parts.hostname or "").lower()
    if host in hosts or (parts.port is not None and f"{host}:{parts.port}" in hosts):
        return True
    return any(entry.startswith(".") and host.endswith(entry) for entry in hosts)


def listed_hosts(value: str) -> set[str]:
    """A comma-separated setting of hosts, lower-cased, blanks dropped."""
    return {host.strip().lower() for host in value.split(",") if host.strip()}
