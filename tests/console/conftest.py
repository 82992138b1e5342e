from collections.abc import AsyncIterator

import httpx
import pytest

from tests.console.helpers import Browserish


@pytest.fixture
async def client(api_url: str) -> AsyncIterator[Browserish]:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        yield Browserish(http)
