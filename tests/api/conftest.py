"""The API the access matrix and its neighbours (test_secrets_audit, test_bad_input_matrix) call."""

from collections.abc import AsyncIterator

import asyncpg
import pytest

from controller.settings import ControllerSettings
from controller.web.app import create_app
from testkit.serving import serve_app
from tests.api.access_world import routes


@pytest.fixture(scope="module")
async def matrix_app(
    settings: ControllerSettings, pool: asyncpg.Pool
) -> AsyncIterator[tuple[str, list[str]]]:
    """The API with private addresses granted for channels and report mailboxes (the world's
    endpoints are on loopback, refused at once: no request leaves the machine)."""
    allowing = settings.replace(
        notify_private_network_grants="*=127.0.0.0/8", reports_mailbox_allow_private=True
    )
    app = create_app(allowing, pool)
    async with serve_app(app) as url:
        yield url, routes(app)
