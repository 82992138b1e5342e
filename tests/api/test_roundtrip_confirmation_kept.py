"""A round trip's delivery confirmation is of its mailbox (SQL `roundtrip_mailbox`): it survives
every write that does not change the mailbox, and an apply of an unchanged export writes
nothing at all (no UPDATE: `updated_at` stays, no "monitor updated"), for an IMAP and a POP3
mailbox alike; a new receive server or login drops it."""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from controller.ascode.run import current, export_text
from controller.ascode.spec import load
from testkit.serving import http_client
from tests.api.test_monitors_as_code import run
from tests.conftest import Tenant

RT = "/api/roundtrip-monitors"
ENV = {"MAILPROBE_SECRET_P": "pw"}
FILE = """\
customer: {customer}
monitors:
  - type: roundtrip
    name: Mail arrives
    allowedCheckCountryCodes: [DE, US]
    roundtripConfig:
      to: probe@example.com
      send:
        hostname: smtp.example.com
        port: 587
        requireTls: true
        from: probe@example.com
        auth: {{user: probe@example.com, pass: {{env: MAILPROBE_SECRET_P}}}}
      receive:
        protocol: {protocol}
        hostname: mail.example.com
        user: probe@example.com
        password: {{env: MAILPROBE_SECRET_P}}
        tls: true
"""


@pytest.fixture
async def client(api_url: str, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=api_url, headers=tenant.auth(), timeout=10) as c:
        yield c


async def _state(pool: asyncpg.Pool, public_id: str) -> tuple[Any, ...]:
    """(updated_at, confirmed_at) of the monitor."""
    row = await pool.fetchrow(
        "SELECT m.updated_at, d.confirmed_at FROM monitors m LEFT JOIN roundtrip_delivery d"
        " ON d.monitor_id = m.id WHERE m.public_id = $1::uuid",
        public_id,
    )
    assert row is not None
    return tuple(row.values())


async def _applied(client: httpx.AsyncClient, tenant: Tenant, protocol: str) -> str:
    customer = tenant.customer_public_id
    text = FILE.format(customer=customer, protocol=protocol)
    code, said = await run(load(text, "m.yaml", ENV), client)
    assert code == 0, said
    (monitor,) = await current(client, customer)
    return monitor.public_id


async def _confirm(pool: asyncpg.Pool, public_id: str) -> None:
    await pool.execute(
        "INSERT INTO roundtrip_delivery (monitor_id, confirmed_at)"
        " SELECT id, now() - interval '1 minute' FROM monitors WHERE public_id = $1::uuid"
        " ON CONFLICT (monitor_id) DO NOTHING",
        public_id,
    )


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_an_unchanged_export_applied_again_writes_nothing_and_keeps_the_confirmation(
    client: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, protocol: str
) -> None:
    """The export leaves out defaults (IMAP's `protocol`), the file spelt them: the same
    config, so the PATCH carrying its secrets again changes nothing."""
    public_id = await _applied(client, tenant, protocol)
    await _confirm(pool, public_id)
    before = await _state(pool, public_id)
    exported = export_text(
        tenant.customer_public_id, await current(client, tenant.customer_public_id)
    )
    with capture_logs() as logs:
        code, said = await run(load(exported, "exported.yaml", ENV), client)
    assert code == 0 and said[0].startswith("= keep roundtrip") and "0 updated" in said[-1], said
    assert not [e for e in logs if e["event"] == "monitor updated"], logs
    assert await _state(pool, public_id) == before


async def test_writes_that_keep_the_mailbox_keep_the_confirmation(
    client: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """The GET sent back (every default spelt out), the secrets sent again: no write. The send
    leg, the folders, a secret sealed anew, the receive server's name in capitals, its default
    port spelt out: written, the same mailbox. A new receive server or login: a new mailbox,
    the confirmation gone."""
    public_id = await _applied(client, tenant, "imap")
    await _confirm(pool, public_id)
    url = f"{RT}/{public_id}"
    shown = (await client.get(url)).json()
    config = shown["roundtripConfig"]
    before = await _state(pool, public_id)
    secrets = {
        "send": {**config["send"], "auth": {**config["send"]["auth"], "pass": "pw"}},
        "receive": {**config["receive"], "password": "pw"},
    }
    for unchanged in (
        {"roundtripConfig": config},
        {"roundtripConfig": {**config, **secrets}},
    ):
        r = await client.patch(url, json=unchanged)
        assert r.status_code == 200, r.text
        assert await _state(pool, public_id) == before, unchanged
    receive = {**config["receive"], "password": "new-pw", "folders": ["INBOX", "Junk"]}
    moved = {**config, "send": {**secrets["send"], "hostname": "smtp2.example.com"}}
    r = await client.patch(url, json={"roundtripConfig": moved})
    assert r.status_code == 200, r.text
    assert (await _state(pool, public_id))[1] == before[1]
    config = {**config, "send": {**config["send"], "hostname": "smtp2.example.com"}}
    for same_mailbox in (
        {**config, "receive": receive},
        {**config, "receive": {**config["receive"], "hostname": "MAIL.example.com."}},
        {**config, "receive": {**config["receive"], "port": 993}},  # its TLS port spelt out
    ):
        r = await client.patch(url, json={"roundtripConfig": same_mailbox})
        assert r.status_code == 200, r.text
        updated_at, confirmed_at = await _state(pool, public_id)
        assert updated_at > before[0] and confirmed_at == before[1], same_mailbox
    for new_mailbox in (
        {"hostname": "imap.example.com", "password": "pw"},
        {"user": "probe+2@example.com", "password": "pw"},
    ):
        await _confirm(pool, public_id)
        changed = {**config, "receive": {**config["receive"], **new_mailbox}}
        r = await client.patch(url, json={"roundtripConfig": changed})
        assert r.status_code == 200, r.text
        assert (await _state(pool, public_id))[1] is None, new_mailbox
