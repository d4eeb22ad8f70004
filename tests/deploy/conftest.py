"""Fixtures of the deployment/metrics tests: a real Redis database of our own, and the repository paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# The session's shared Redis (tests/conftest.py) also carries the session worker's queue in database 0.
# These tests push raw items onto lists named like that queue, so they use a database no worker reads.
_OWN_DATABASE = 13


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """URL of a database of the shared real Redis server that only these tests use, emptied for each test
    so list lengths never leak from one test to the next."""
    base = redis_server.rsplit("/", 1)[0] if redis_server.count("/") > 2 else redis_server
    url = f"{base}/{_OWN_DATABASE}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of :func:`redis_url`'s (empty) database."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
