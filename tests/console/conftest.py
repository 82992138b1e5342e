from collections.abc import AsyncIterator

import pytest

from testkit.serving import http_client
from tests.console.helpers import Browserish


@pytest.fixture
async def client(api_url: str) -> AsyncIterator[Browserish]:
    async with http_client(base_url=api_url, timeout=10) as http:
        yield Browserish(http)
