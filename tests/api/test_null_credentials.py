"""A null user name or password in a monitor's config is none, as an empty one: it was stored
as null, which the stored config cannot hold. A round trip's create answered 500 and so did
every later read of round trips; an SMTP or IMAP/POP monitor was never checked (the scheduler
skips a config it cannot read). Found by schemathesis (make fuzz, 100 examples, stateful).
Rows stored with null before the fix are read as none too."""

import copy
from typing import Any, cast

import asyncpg
import httpx
import pytest

from controller.scheduling.job_config import job_config
from controller.secrets.box import SecretBox
from controller.settings import ControllerSettings
from shared.messages import ImapPopConfig, SmtpConfig
from tests.api.helpers import CONFIG_KEY, IMAP, SMTP, create, seed_body, stored_row
from tests.api.test_roundtrip_monitors import RT, body
from tests.conftest import Tenant


def _with(config: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    out = copy.deepcopy(config)
    *parents, leaf = path.split(".")
    node = out
    for step in parents:
        node = node[step]
    node[leaf] = value
    return out


def _request(kind: str, tenant: Tenant, path: str, value: object) -> tuple[str, dict[str, Any]]:
    if kind == "roundtrip":
        sent = body(tenant)
        sent["roundtripConfig"] = _with(sent["roundtripConfig"], path, value)
        if path == "send.auth.user":  # without a send login, the sender is in `to`'s domain
            sent["roundtripConfig"]["send"]["from"] = sent["roundtripConfig"]["to"]
        return RT, sent
    sent = seed_body(kind, tenant)
    key = "smtpConfig" if kind == "smtp" else "imapPopConfig"
    sent[key] = _with(sent[key], path, value)
    return (SMTP if kind == "smtp" else IMAP), sent


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("smtp", "auth.pass"),
        ("smtp", "auth.user"),
        ("imap", "user"),
        ("imap", "password"),
        ("roundtrip", "send.auth.pass"),  # the fuzzer's
        ("roundtrip", "send.auth.user"),
    ],
)
async def test_a_null_user_or_password_is_none_and_the_monitor_stays_usable(
    http: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    tenant: Tenant,
    kind: str,
    path: str,
) -> None:
    box = SecretBox(settings.secrets.secrets_key or "")
    created = []
    for value in (None, ""):
        url, sent = _request(kind, tenant, path, value)
        r = await http.post(url, json=sent, headers=tenant.auth())
        assert r.status_code == 201, r.text
        created.append(r.json())
        row = await stored_row(pool, created[-1]["publicId"])
        job_config(row["type"], row["config"], box)  # what the scheduler does every round
    null, empty = (_comparable(c) for c in created)
    assert null == empty
    r = await http.get(url, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert created[0]["publicId"] in [m["publicId"] for m in r.json()["items"]]


def _comparable(monitor: dict[str, Any]) -> dict[str, Any]:
    """The response without what differs between two creates (ids, times)."""
    drop = {"id", "publicId", "createdAt", "updatedAt"}
    return {k: v for k, v in monitor.items() if k not in drop}


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("smtp", {"auth": {"user": None, "pass": None}}),
        ("imap", {"user": None, "password": None}),
    ],
)
async def test_a_row_stored_with_null_credentials_before_the_fix_is_read_as_none(
    http: httpx.AsyncClient,
    tenant: Tenant,
    pool: asyncpg.Pool,
    settings: ControllerSettings,
    kind: str,
    config: dict[str, Any],
) -> None:
    """A database written by an older controller holds the nulls: the scheduler read them as a
    config of the wrong shape and skipped every round of the monitor ("monitor unusable; round
    skipped"), while its API showed it active."""
    monitor = await create(http, tenant, kind)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET config = $2::jsonb WHERE public_id = $1::uuid",
            monitor["publicId"],
            config,
        )
    row = await stored_row(pool, monitor["publicId"])
    job = job_config(row["type"], row["config"], SecretBox(settings.secrets.secrets_key or ""))
    job = cast(SmtpConfig | ImapPopConfig, job)  # an SMTP or IMAP/POP3 monitor's
    credentials = job.auth if isinstance(job, SmtpConfig) else job
    assert credentials is not None and (credentials.user, credentials.password.reveal()) == ("", "")
    r = await http.get(
        f"{SMTP if kind == 'smtp' else IMAP}/{monitor['publicId']}", headers=tenant.auth()
    )
    assert r.status_code == 200, r.text
    assert r.json()[CONFIG_KEY[kind]] == config
