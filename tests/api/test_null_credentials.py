"""A null user name or password in a monitor's config is none, as an empty one: it was stored
as null, which the stored config cannot hold. A round trip's create answered 500 and so did
every later read of round trips; an SMTP or IMAP/POP monitor was never checked (the scheduler
skips a config it cannot read). Found by schemathesis (make fuzz, 100 examples, stateful)."""

import copy
from typing import Any

import asyncpg
import httpx
import pytest

from controller.scheduler import job_config
from controller.secretbox import SecretBox
from shared.settings import ControllerSettings
from tests.api.helpers import IMAP, SMTP, seed_body, stored_row
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
    box = SecretBox(settings.secrets_key or "")
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
