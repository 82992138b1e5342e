"""`relayCheck` (default false) in `smtpConfig` (issue 58): the opt-in open relay test. Stored,
shown, strictly a boolean, carried into the job's config; an extra field after the seeds'
keys (a body without it is the seeds' body, answered as before); SMTP monitors only (a round
trip's send leg refuses it)."""

from typing import Any, cast

import asyncpg
import httpx
import pytest

from controller.scheduling.job_config import job_config
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.messages import SmtpConfig
from tests.api.helpers import PATHS, assert_error, create, stored_row
from tests.api.test_roundtrip_monitors import RT, body
from tests.conftest import Tenant


async def test_the_opt_in_is_stored_shown_and_reaches_the_job(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, settings: ControllerSettings
) -> None:
    box = SecretBox(settings.secrets.secrets_key or "")
    monitor = await create(http, tenant, smtpConfig={"secure": False, "relayCheck": True})
    assert monitor["smtpConfig"] == {"secure": False, "relayCheck": True}
    assert monitor["config"] == monitor["smtpConfig"]
    row = await stored_row(pool, monitor["publicId"])
    assert cast(SmtpConfig, job_config(row["type"], row["config"], box)).relay_check is True
    # the seeds' body, without it: off, and nothing of it shown
    plain = await create(http, tenant)
    assert "relayCheck" not in plain["smtpConfig"]
    row = await stored_row(pool, plain["publicId"])
    assert cast(SmtpConfig, job_config(row["type"], row["config"], box)).relay_check is False
    # a PATCH without it keeps it; one with false turns it off
    path = f"{PATHS['smtp']}/{monitor['publicId']}"
    r = await http.patch(path, json={"name": "renamed"}, headers=tenant.auth())
    assert r.status_code == 200 and r.json()["smtpConfig"]["relayCheck"] is True
    r = await http.patch(path, json={"smtpConfig": {"relayCheck": False}}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    row = await stored_row(pool, monitor["publicId"])
    assert cast(SmtpConfig, job_config(row["type"], row["config"], box)).relay_check is False


@pytest.mark.parametrize("value", ["true", 1, None, {}])
async def test_the_opt_in_is_strictly_a_boolean(
    http: httpx.AsyncClient, tenant: Tenant, value: Any
) -> None:
    r = await http.post(
        PATHS["smtp"],
        json={
            "customerId": tenant.customer_id,
            "name": "relay",
            "hostname": "mx.example.com",
            "smtpConfig": {"relayCheck": value},
        },
        headers=tenant.auth(),
    )
    assert_error(r, 400, fields=["smtpConfig.relayCheck"])


async def test_a_round_trip_send_leg_refuses_it(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(RT, json=body(tenant, send__relayCheck=True), headers=tenant.auth())
    assert r.status_code == 400, r.text
    assert "relayCheck" in r.text
