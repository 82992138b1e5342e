"""`python -m tests.api.log_server DATABASE_URL SECRETS_KEY`: the API on that database with the
product's logging (`shared.logging.configure`, JSON to stderr) at DEBUG, and then every logger
at DEBUG, the dependencies' included (the product keeps theirs at WARNING: here nothing is
filtered, so a secret a library would write at any level shows). Prints the base URL on stdout
and serves until stdin closes. For tests/api/test_secrets_audit.py, which greps stderr."""

import asyncio
import logging
import sys

from controller.db.pool import create_pool
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.logging import configure
from testkit.serving import serve_app


def everything_at_debug() -> None:
    configure("json", "DEBUG")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in root.handlers:
        handler.filters.clear()
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.setLevel(logging.DEBUG)
            logger.disabled = False


async def main(database_url: str, secrets_key: str) -> None:
    everything_at_debug()
    settings = ControllerSettings.of(
        database_url=database_url,
        secrets_key=secrets_key,
        public_url="http://localhost:8080",
        notify_private_network_grants="*=127.0.0.0/8",
        reports_mailbox_allow_private=True,
        oauth2_token_hosts="127.0.0.1",
        api_requests_per_second_per_address=0,  # every request is 127.0.0.1's
    )
    pool = await create_pool(database_url, 4)
    loop = asyncio.get_running_loop()
    try:
        async with serve_app(create_app(settings, pool)) as url:
            everything_at_debug()  # loggers the app made while starting
            print(url, flush=True)
            await loop.run_in_executor(None, sys.stdin.read)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
