"""A null user or password in an SMTP or IMAP/POP config means none: accepted and shown as sent
(the API's contract since the seeds), and read by the scheduler as the wire default "" (the agent
logs in only with both), never as a config of the wrong shape."""

from typing import Any

import asyncpg
import httpx
import pytest

from controller.scheduler import job_config
from controller.secretbox import SecretBox
from shared.messages import SmtpConfig
from shared.settings import ControllerSettings
from tests.api.helpers import CONFIG_KEY, create, stored_row
from tests.conftest import Tenant


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("smtp", {"auth": {"user": None, "pass": None}}),
        ("imap", {"user": None, "password": None}),
    ],
)
async def test_a_null_user_and_password_are_none_and_the_monitor_is_checked(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    kind: str,
    config: dict[str, Any],
) -> None:
    """The scheduler read them as a config of the wrong shape and skipped every round of the
    monitor ("monitor unusable; round skipped"), while its API showed it active."""
    monitor = await create(http, tenant, kind, **{CONFIG_KEY[kind]: config})
    assert monitor[CONFIG_KEY[kind]] == config
    row = await stored_row(pool, monitor["publicId"])
    job = job_config(row["type"], row["config"], SecretBox(settings.secrets_key or ""))
    credentials = job.auth if isinstance(job, SmtpConfig) else job
    assert credentials is not None and (credentials.user, credentials.password) == ("", "")
