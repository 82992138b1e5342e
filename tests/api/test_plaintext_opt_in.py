"""`allowPlaintextAuth` (default false) in `smtpConfig` and `imapPopConfig`: the explicit,
per-monitor opt-in to send credentials without TLS (lab servers). Stored, shown, strictly a
boolean, carried into the job's config; native API only (AlertSite has no such field, and its
PATCH keeps what the native API stored)."""

from typing import Any, cast

import asyncpg
import httpx
import pytest

from controller.scheduling.job_config import job_config
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.messages import ImapPopConfig, SmtpConfig
from tests.alertsite.helpers import V3
from tests.api.helpers import CONFIG_KEY, PATHS, assert_error, create, stored_row
from tests.conftest import Tenant

CONFIGS: dict[str, Any] = {
    "smtp": {"auth": {"user": "lab", "pass": "lab-pass"}, "allowPlaintextAuth": True},
    "imap": {"protocol": "pop3", "user": "lab", "password": "lab-pass", "allowPlaintextAuth": True},
}


@pytest.mark.parametrize("kind", ["smtp", "imap"])
async def test_the_opt_in_is_stored_shown_and_reaches_the_job(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    kind: str,
) -> None:
    box = SecretBox(settings.secrets.secrets_key or "")
    monitor = await create(http, tenant, kind, port=None, **{CONFIG_KEY[kind]: CONFIGS[kind]})
    assert monitor[CONFIG_KEY[kind]]["allowPlaintextAuth"] is True
    row = await stored_row(pool, monitor["publicId"])
    assert row["config"]["allowPlaintextAuth"] is True
    job = cast(SmtpConfig | ImapPopConfig, job_config(row["type"], row["config"], box))
    assert job.allow_plaintext_auth is True
    # Absent, it is off: what the agent reads is the wire default, false.
    plain = await create(http, tenant, kind)
    row = await stored_row(pool, plain["publicId"])
    assert "allowPlaintextAuth" not in row["config"]
    job = cast(SmtpConfig | ImapPopConfig, job_config(row["type"], row["config"], box))
    assert job.allow_plaintext_auth is False


@pytest.mark.parametrize("kind", ["smtp", "imap"])
@pytest.mark.parametrize("value", ["true", 1, 0, None, [], {}])
async def test_the_opt_in_is_strictly_a_boolean(
    http: httpx.AsyncClient, tenant: Tenant, kind: str, value: Any
) -> None:
    key = CONFIG_KEY[kind]
    cfg = {**CONFIGS[kind], "allowPlaintextAuth": value}
    r = await http.post(
        PATHS[kind],
        json={"customerId": tenant.customer_id, "name": "lab", "hostname": "lab.test", key: cfg},
        headers=tenant.auth(),
    )
    assert_error(r, 400, fields=[f"{key}.allowPlaintextAuth"])


async def test_the_opt_in_is_in_the_openapi_request_schemas(http: httpx.AsyncClient) -> None:
    schemas = (await http.get("/schema/openapi.json")).json()["components"]["schemas"]
    for name in ("SmtpConfigIn", "ImapPopConfigIn"):
        prop = schemas[name]["properties"]["allowPlaintextAuth"]
        assert "boolean" in [prop.get("type"), *(o.get("type") for o in prop.get("oneOf", []))]
        assert "tls_required" in prop["description"]


async def test_alertsite_edits_keep_the_native_opt_in(
    http: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    monitor = await create(http, tenant, smtpConfig={"allowPlaintextAuth": True})
    r = await http.patch(
        f"{V3}/monitors/email-smtp/{monitor['id']}",
        json={"name": "renamed", "login": "lab"},
        headers=tenant.auth(),
    )
    assert r.status_code == 200, r.text
    row = await stored_row(pool, monitor["publicId"])
    assert row["config"] == {"allowPlaintextAuth": True, "auth": {"user": "lab"}}
