"""Ops tests (metrics, health, readiness, TLS) on the session's real NATS and PostgreSQL.

Prometheus' default registry is one per process and every test of the session writes to it, so
these tests compare a metric before and after what they do, never its absolute value; and each
takes country codes no other test uses, so its labelled series are its own.
"""

from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts, build_ssl_contexts
from shared.streams import ensure_streams
from tests.countries import OPS, handout
from tests.ops.http_front import Serve, Shared, server

_COUNTRIES = handout(OPS)


@pytest.fixture
def country() -> str:
    return next(_COUNTRIES)


@pytest.fixture
def other_country() -> str:
    return next(_COUNTRIES)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_url)
    await ensure_streams(conn.jetstream())
    yield conn
    await conn.close()


@pytest.fixture
def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture(scope="session")
def ssl_contexts() -> Iterator[SslContexts]:
    yield build_ssl_contexts()


@pytest.fixture(scope="module")
async def serve(database_url: str, nats_url: str) -> AsyncIterator[Serve]:
    """`controller serve` with the `api` role (tests/ops/http_front.py), its process kept for
    the next test of the module that asks for the same settings (http_front.Shared)."""
    shared = Shared(server(database_url, nats_url))
    yield shared
    await shared.aclose()
