"""Agent tests: the session's real NATS with the product's streams, one country per test."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts, build_ssl_contexts
from shared import embedded
from shared.streams import ensure_streams
from testkit.netns import netns as netns
from tests.agent.faults import ResultsGate
from tests.countries import AGENT, handout

# One country per test (tests/countries.py).
_COUNTRIES = handout(AGENT)


@pytest.fixture
def country() -> str:
    return next(_COUNTRIES)


@pytest.fixture
def other_country() -> str:
    return next(_COUNTRIES)


@pytest.fixture(scope="session")
async def streams(nats_url: str) -> None:
    """What the controller does at start: JOBS, RESULTS, EVENTS and the agents bucket."""
    nc = await nats.connect(nats_url)
    await ensure_streams(nc.jetstream())
    await nc.close()


@pytest.fixture
async def nc(nats_url: str, streams: None) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_url)
    yield conn
    await conn.close()


@pytest.fixture
def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture(scope="session")
def ssl_contexts() -> Iterator[SslContexts]:
    yield build_ssl_contexts()


@pytest.fixture
async def gate(nats_url: str) -> AsyncIterator[ResultsGate]:
    """The way to the session's NATS that holds publishes to RESULTS while closed."""
    async with ResultsGate(int(nats_url.rpartition(":")[2])) as gated:
        yield gated


@pytest.fixture
async def gated_nc(gate: ResultsGate, streams: None) -> AsyncIterator[NATS]:
    """A connection through `gate`."""
    conn = await nats.connect(gate.url)
    yield conn
    await conn.close()


@pytest.fixture
async def bare_nats(tmp_path: Path) -> AsyncIterator[str]:
    """A NATS server of its own, with no streams yet (the controller has not started)."""
    proc, url = embedded.start_nats(tmp_path / "nats")
    yield url
    embedded.stop(proc)
