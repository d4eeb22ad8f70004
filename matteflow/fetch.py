"""Images named by URL (``image_url``), read by the server under a request-forgery guard.

A pipeline whose photos already sit behind a CDN or in a bucket sends their URLs instead of the bytes: the web
process reads the one image of ``POST /api/v1/matte`` itself, and a job's URLs are read by the workers, each
as its item's first step (retried like any other transient failure). A server that fetches any URL a client
names is a relay into the network it runs in (the cloud metadata address, an admin port on localhost), so:

- ``MATTEFLOW_FETCH_HOSTS`` says which hosts may be read: empty (the default) turns image URLs off; ``*``
  allows any host whose every address is public (global unicast); otherwise a comma-separated list of
  ``host``, ``host:port`` or ``.domain`` (any host under it), and ``*`` may stand beside them. A host the
  operator listed is trusted even when it resolves to a private address (an image store inside the network).
- The name is resolved once, checked, and the connection is made to that very address (HTTPS still verifies
  the certificate for the name): a DNS answer that changes between the check and the connection (rebinding)
  cannot redirect the request. Redirects are followed by hand, at most ``MAX_REDIRECTS``, each checked again.
- The body is streamed to a spooled temporary file, at most ``MATTEFLOW_MAX_UPLOAD_MB``, within
  ``MATTEFLOW_FETCH_TIMEOUT_S`` in all; what it is, the image header check decides (never the Content-Type).

A URL the policy refuses raises :class:`FetchRefused` (the web answers 400 ``url_not_allowed``); an origin
that gives no image raises :class:`ImageFetchError`, ``transient`` when another try may succeed (a timeout, a
refused connection, HTTP 5xx or 429) and not when it cannot (HTTP 404, too large, too many redirects).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import SplitResult, unquote, urljoin, urlunsplit

import certifi
import urllib3

from matteflow import metrics
from matteflow.core.errors import InputError
from matteflow.files import SPOOL_IN_MEMORY_BYTES, sanitize_name
from matteflow.settings import Settings
from matteflow.urls import host_listed, listed_hosts, split_http_url

MAX_URL_CHARS = 2000
MAX_REDIRECTS = 3
CONNECT_TIMEOUT_S = 5.0
CHUNK_BYTES = 64 * 1024
USER_AGENT = "MatteFlow-Fetch/1 (+image_url)"
ANY_PUBLIC_HOST = "*"
RESOLVE_THREADS = 16  # a job's distinct hosts looked up at once at intake
# Answers worth another try later: the origin is overloaded or briefly failing, not refusing this image.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

Resolver = Callable[[str, int], list[str]]


class FetchRefused(InputError):
    """The URL is not one this server may read: a host not listed, a private or local address."""


class ImageFetchError(InputError):
    """The URL was allowed but gave no image bytes. ``transient``: another try may succeed."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class ImageUrl:
    """An image a job names by URL, to be read by the worker that takes its item."""

    url: str

    @property
    def name(self) -> str:
        return name_of(split_http_url(self.url, "image_url", MAX_URL_CHARS))


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageFetchError(
            f"could not fetch the image: the host {host!r} does not resolve ({exc})", transient=True
        ) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def fetching_enabled(settings: Settings) -> bool:
    return bool(listed_hosts(settings.fetch_hosts))


def check_image_url(url: str, settings: Settings) -> SplitResult:
    """The URL split, if its shape and host are allowed (addresses are checked when it is read).

    Raises :class:`~matteflow.core.errors.InvalidOptionError` for a URL that is not http(s) with a host, or
    carries credentials, and :class:`FetchRefused` for a host this server may not read."""
    hosts = listed_hosts(settings.fetch_hosts)
    if not hosts:
        raise FetchRefused("image URLs are off on this server (MATTEFLOW_FETCH_HOSTS is empty)")
    parts = split_http_url(url.strip(), "image_url", MAX_URL_CHARS)
    if ANY_PUBLIC_HOST not in hosts and not host_listed(parts, hosts):
        raise FetchRefused(
            f"image_url's host {parts.hostname!r} is not one this server may read (MATTEFLOW_FETCH_HOSTS)"
        )
    return parts


def check_image_urls(urls: Iterable[str], settings: Settings, resolve: Resolver = system_resolver) -> None:
    """Check a job's URLs at intake, addresses included (each distinct host resolved once, several at a
    time), so a refused one fails the request at once; the worker that reads each checks again (the answer
    may have changed meanwhile)."""
    hosts: dict[tuple[str, int | None], SplitResult] = {}
    for url in urls:
        parts = check_image_url(url, settings)
        hosts.setdefault(((parts.hostname or "").lower(), parts.port), parts)

    def check_addresses(parts: SplitResult) -> None:
        # A name that does not resolve now is left to the worker's tries (which say so on the item).
        with contextlib.suppress(ImageFetchError):
            _pinned_address(parts, settings, resolve)

    with ThreadPoolExecutor(max(1, min(RESOLVE_THREADS, len(hosts))), thread_name_prefix="matteflow-dns") as pool:
        list(pool.map(check_addresses, hosts.values()))  # the first refusal is raised here


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _pinned_address(parts: SplitResult, settings: Settings, resolve: Resolver) -> str:
    """The address to connect to: the host's own when the operator listed it, else one that is public (every
    address the name has must be: a name with one private address among public ones is refused)."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(parts.hostname or "", port)
    if not addresses:
        raise ImageFetchError(f"could not fetch the image: the host {parts.hostname!r} has no address", transient=True)
    if host_listed(parts, listed_hosts(settings.fetch_hosts)):
        return addresses[0]
    if not all(_is_public(address) for address in addresses):
        raise FetchRefused(
            f"image_url's host {parts.hostname!r} resolves to a private or local address; list it in "
            "MATTEFLOW_FETCH_HOSTS if this server should read it"
        )
    return addresses[0]


def _pool(parts: SplitResult, address: str, deadline: float) -> urllib3.HTTPConnectionPool:
    """A connection pool to ``address`` (the pinned IP); HTTPS verifies the certificate for the URL's host."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=max(0.1, deadline - time.monotonic()))
    if parts.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            server_hostname=parts.hostname,
            assert_hostname=parts.hostname,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)


def _get(pool: urllib3.HTTPConnectionPool, parts: SplitResult) -> urllib3.BaseHTTPResponse:
    """GET the URL's path through ``pool``, naming the URL's own host (not the address) in ``Host``."""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    headers = {"Host": host_header, "User-Agent": USER_AGENT, "Accept": "image/*"}
    target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return pool.urlopen("GET", target, headers=headers, redirect=False, preload_content=False, release_conn=True)


def fetch_image(
    url: str, settings: Settings, *, spool_dir: Path | None = None, resolve: Resolver = system_resolver
) -> tuple[str, IO[bytes]]:
    """(a file name from the URL, the body in a spooled temporary file at position 0).

    Raises :class:`FetchRefused` for a URL the policy refuses (also after a redirect), and
    :class:`ImageFetchError` when the origin gives no image bytes. Counted in
    ``matteflow_image_fetches_total{outcome}``.
    """
    try:
        name, body = _fetch(url, settings, spool_dir, resolve)
    except FetchRefused:
        metrics.FETCHES_TOTAL.labels(outcome="refused").inc()
        raise
    except ImageFetchError:
        metrics.FETCHES_TOTAL.labels(outcome="failed").inc()
        raise
    metrics.FETCHES_TOTAL.labels(outcome="fetched").inc()
    metrics.FETCH_BYTES_TOTAL.inc(body.seek(0, 2))
    body.seek(0)
    return name, body


def _fetch(url: str, settings: Settings, spool_dir: Path | None, resolve: Resolver) -> tuple[str, IO[bytes]]:
    parts = check_image_url(url, settings)
    deadline = time.monotonic() + settings.fetch_timeout_s
    limit = settings.max_upload_bytes
    for _ in range(MAX_REDIRECTS + 1):
        address = _pinned_address(parts, settings, resolve)
        with _pool(parts, address, deadline) as pool:
            try:
                response = _get(pool, parts)
            except urllib3.exceptions.HTTPError as exc:
                raise ImageFetchError(
                    f"could not fetch the image from {parts.hostname}: {_reason(exc)}", transient=True
                ) from None
            try:
                location = response.headers.get("Location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    parts = check_image_url(urljoin(urlunsplit(parts), location), settings)
                    continue
                if response.status != 200:
                    raise ImageFetchError(
                        f"could not fetch the image from {parts.hostname}: it answered HTTP {response.status}",
                        transient=response.status in TRANSIENT_STATUSES,
                    )
                return name_of(parts), _read_body(response, limit, deadline, spool_dir, parts.hostname or "")
            finally:
                response.release_conn()
    raise ImageFetchError(f"could not fetch the image: more than {MAX_REDIRECTS} redirects")


def _read_body(
    response: urllib3.BaseHTTPResponse, limit: int, deadline: float, spool_dir: Path | None, host: str
) -> IO[bytes]:
    declared = response.headers.get("Content-Length")
    too_large = (
        f"could not fetch the image from {host}: it is larger than the limit of {limit // 2**20} MB "
        "(MATTEFLOW_MAX_UPLOAD_MB)"
    )
    if declared and declared.isdecimal() and int(declared) > limit:
        raise ImageFetchError(too_large)
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES, mode="w+b", dir=spool_dir)  # noqa: SIM115
    try:
        size = 0
        for chunk in response.stream(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise ImageFetchError(too_large)
            if time.monotonic() > deadline:
                raise ImageFetchError(
                    f"could not fetch the image from {host}: it took longer than the time allowed", transient=True
                )
            body.write(chunk)
    except urllib3.exceptions.HTTPError as exc:
        body.close()
        raise ImageFetchError(f"could not fetch the image from {host}: {_reason(exc)}", transient=True) from None
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "it did not answer in time"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "no secure (TLS) connection could be made: an invalid certificate or no TLS there"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "the connection was refused"
    return f"the connection failed ({type(exc).__name__})"


def name_of(parts: SplitResult) -> str:
    """The URL path's last part (``.../IMG_0001.jpg?w=800`` -> ``IMG_0001.jpg``), or ``image``."""
    return sanitize_name(PurePosixPath(unquote(parts.path)).name, fallback="image")
