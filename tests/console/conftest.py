from collections.abc import AsyncIterator, Iterator

import pytest
from selenium import webdriver

from testkit.serving import http_client
from tests.console import browser
from tests.console.helpers import Browserish


@pytest.fixture
async def client(api_url: str) -> AsyncIterator[Browserish]:
    async with http_client(base_url=api_url, timeout=10) as http:
        yield Browserish(http)


@pytest.fixture(scope="session")
def shared_chromium() -> Iterator[browser.Shared]:
    """The worker's headless Chromium, lent to each test that takes `driver`."""
    shared = browser.Shared()
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def driver(shared_chromium: browser.Shared) -> Iterator[webdriver.Chrome]:
    """Headless Chromium as if started for this test (`browser.fresh`): one per worker, kept
    between tests while they come (browser.IDLE_QUIT_S); a machine without it fails the test
    saying why."""
    problem = browser.missing()
    if problem is not None:
        pytest.fail(problem)
    yield shared_chromium.lend()
    shared_chromium.done()
