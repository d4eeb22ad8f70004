"""Images named by URL (``image_url``): the intake service reads them itself, under a request-forgery guard.

A pipeline whose photos already sit behind a CDN or in a bucket sends their URLs instead of the bytes. A
server that fetches any URL a client names is a relay into the network it runs in (the cloud metadata
address, an admin port on localhost), so:

- ``MATTEFLOW_FETCH_HOSTS`` says which hosts may be read: empty (the default) turns image URLs off; ``*``
  allows any host whose every address is public (global unicast); otherwise a comma-separated list of
  ``host``, ``host:port`` or ``.domain`` (any host under it), and ``*`` may stand beside them. A host the
  operator listed is trusted even when it resolves to a private address (an image store inside the network).
- The name is resolved once, checked, and the connection is made to that very address (HTTPS still verifies
  the certificate for the name): a DNS answer that changes between the check and the connection (rebinding)
  cannot redirect the request. Redirects are followed by hand, at most ``MAX_REDIRECTS``, each checked again.
- The body is streamed to a spooled temporary file, at most ``MATTEFLOW_MAX_UPLOAD_MB``, within
  ``MATTEFLOW_FETCH_TIMEOUT_S`` in all; what it is, the image header check decides (never the Content-Type).

A URL the policy refuses is the client's mistake and fails the request (400 ``url_not_allowed``). An origin
that answers badly (404, a timeout, too large) fails that image alone, like a bad upload.
"""

from __future__ import annotations

import ipaddress
import socket
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import SplitResult, unquote, urljoin, urlunsplit

import certifi
import urllib3

from matteflow import metrics
from matteflow.core.errors import InputError
from matteflow.files import sanitize_name
from matteflow.settings import Settings
from matteflow.urls import host_listed, listed_hosts, split_http_url

from .errors import ApiError
from .uploads import SPOOL_IN_MEMORY_BYTES, stream_size

MAX_URL_CHARS = 2000
MAX_REDIRECTS = 3
CONNECT_TIMEOUT_S = 5.0
CHUNK_BYTES = 64 * 1024
USER_AGENT = "MatteFlow-Fetch/1 (+image_url)"
FETCH_THREADS = 8  # URLs of one job read at once
# The URLs of a job are read while its request waits (at worst ceil(n / FETCH_THREADS) x the timeout): a
# bound keeps that to minutes; thousands of photos go as several jobs.
MAX_URLS_PER_REQUEST = 100
ANY_PUBLIC_HOST = "*"

Resolver = Callable[[str, int], list[str]]


class ImageFetchError(InputError):
    """The URL was allowed but gave no image bytes (an HTTP error, a timeout, too large): that image fails."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageFetchError(f"could not fetch the image: the host {host!r} does not resolve ({exc})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def fetching_enabled(settings: Settings) -> bool:
    return bool(listed_hosts(settings.fetch_hosts))


def check_image_url(url: str, settings: Settings) -> SplitResult:
    """The URL split, if its shape and host are allowed (the addresses are checked when it is fetched); else
    a 400 :class:`ApiError` saying why."""
    hosts = listed_hosts(settings.fetch_hosts)
    if not hosts:
        raise ApiError(400, "url_not_allowed", "image URLs are off on this server (MATTEFLOW_FETCH_HOSTS is empty)")
    parts = split_http_url(url.strip(), "image_url", MAX_URL_CHARS)
    if ANY_PUBLIC_HOST not in hosts and not host_listed(parts, hosts):
        raise ApiError(
            400,
            "url_not_allowed",
            f"image_url's host {parts.hostname!r} is not one this server may read (MATTEFLOW_FETCH_HOSTS)",
        )
    return parts


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
        raise ImageFetchError(f"could not fetch the image: the host {parts.hostname!r} has no address")
    if host_listed(parts, listed_hosts(settings.fetch_hosts)):
        return addresses[0]
    if not all(_is_public(address) for address in addresses):
        raise ApiError(
            400,
            "url_not_allowed",
            f"image_url's host {parts.hostname!r} resolves to a private or local address; list it in "
            "MATTEFLOW_FETCH_HOSTS if this server should read it",
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

    Raises :class:`ApiError` 400 for a URL the policy refuses (also after a redirect), and
    :class:`ImageFetchError` when the origin gives no image bytes.
    """
    parts = check_image_url(url, settings)
    deadline = time.monotonic() + settings.fetch_timeout_s
    limit = settings.max_upload_bytes
    for _ in range(MAX_REDIRECTS + 1):
        address = _pinned_address(parts, settings, resolve)
        with _pool(parts, address, deadline) as pool:
            try:
                response = _get(pool, parts)
            except urllib3.exceptions.HTTPError as exc:
                raise ImageFetchError(f"could not fetch the image from {parts.hostname}: {_reason(exc)}") from None
            try:
                location = response.headers.get("Location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    parts = check_image_url(urljoin(urlunsplit(parts), location), settings)
                    continue
                if response.status != 200:
                    raise ImageFetchError(
                        f"could not fetch the image from {parts.hostname}: it answered HTTP {response.status}"
                    )
                return _name_of(parts), _read_body(response, limit, deadline, spool_dir, parts.hostname or "")
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
    if declared and declared.isdigit() and int(declared) > limit:
        raise ImageFetchError(too_large)
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES, mode="w+b", dir=spool_dir)  # noqa: SIM115
    try:
        size = 0
        for chunk in response.stream(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise ImageFetchError(too_large)
            if time.monotonic() > deadline:
                raise ImageFetchError(f"could not fetch the image from {host}: it took longer than the time allowed")
            body.write(chunk)
    except urllib3.exceptions.HTTPError as exc:
        body.close()
        raise ImageFetchError(f"could not fetch the image from {host}: {_reason(exc)}") from None
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


def _name_of(parts: SplitResult) -> str:
    """The URL path's last part (``.../IMG_0001.jpg?w=800`` -> ``IMG_0001.jpg``), or ``image``."""
    return sanitize_name(PurePosixPath(unquote(parts.path)).name, fallback="image")


def fetch_many(
    urls: list[str], settings: Settings, *, spool_dir: Path | None = None, resolve: Resolver = system_resolver
) -> list[tuple[str, IO[bytes] | ImageFetchError]]:
    """Every URL read (``FETCH_THREADS`` at a time), in order: ``(name, body)`` or ``(name, the error)`` for
    one that gave nothing. Every URL is checked before any is read; a refusal (also one found while reading:
    a private address, a redirect elsewhere) raises its 400 after closing what was read."""
    for url in urls:
        try:
            check_image_url(url, settings)
        except ApiError:
            metrics.FETCHES_TOTAL.labels(outcome="refused").inc()
            raise

    def one(url: str) -> tuple[str, IO[bytes] | ImageFetchError]:
        try:
            name, body = fetch_image(url, settings, spool_dir=spool_dir, resolve=resolve)
        except ImageFetchError as exc:
            metrics.FETCHES_TOTAL.labels(outcome="failed").inc()
            return _name_of(split_http_url(url.strip(), "image_url", MAX_URL_CHARS)), exc
        except ApiError:
            metrics.FETCHES_TOTAL.labels(outcome="refused").inc()
            raise
        metrics.FETCHES_TOTAL.labels(outcome="fetched").inc()
        metrics.FETCH_BYTES_TOTAL.inc(stream_size(body))
        return name, body

    with ThreadPoolExecutor(max(1, min(FETCH_THREADS, len(urls))), thread_name_prefix="matteflow-fetch") as pool:
        futures = [pool.submit(one, url) for url in urls]
    results, refusal = [], None
    for future in futures:
        try:
            results.append(future.result())
        except ApiError as exc:
            refusal = refusal or exc
    if refusal is not None:
        for _, body in results:
            if not isinstance(body, ImageFetchError):
                body.close()
        raise refusal
    return results
