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


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    """Headless Chromium, one per test module; a machine without it fails the test saying why."""
    problem = browser.missing()
    if problem is not None:
        pytest.fail(problem)
    with browser.chromium() as d:
        yield d
