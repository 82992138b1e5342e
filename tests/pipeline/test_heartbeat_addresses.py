"""The receiving addresses the controller keeps in RECEIVERS (controller.arrivals.addresses)
against a real receiver watching the bucket: an active heartbeat monitor's address takes mail,
a disabled one's and a deleted one's are refused at RCPT once synced, and a key no monitor
holds is deleted; the entry names the organization by its tenant key."""

import asyncio
import smtplib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from agent.dns_resolver import blocking_resolver
from agent.receiver.book import AddressBook, watch
from agent.receiver.server import Receiver
from agent.receiver.verdicts import Lookup
from agent.settings import ReceiverSettings
from controller.arrivals import addresses
from shared.arrivals import (
    RECEIVERS_BUCKET,
    Arrival,
    ReceivingAddress,
    decode_address,
    new_local_part,
)
from shared.clock import WALL
from testkit.peers.dns import DnsPeer
from tests.conftest import Tenant

DOMAIN = "rx.mailprobe.test"


def tenant_of(organization_id: int) -> str:
    return f"t{organization_id:015x}"


async def _heartbeat(pool: asyncpg.Pool, org: Tenant, status: str) -> tuple[int, str]:
    local = new_local_part()
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds, config)"
            " VALUES ($1, $2, 'heartbeat', 'hb', $3, 25, $4, 60, 30, $5) RETURNING id",
            org.org_id,
            org.customer_id,
            f"{local}@{DOMAIN}",
            status,
            {"everyMinutes": 60, "localPart": local},
        )
    assert row is not None
    return row["id"], local


@pytest.fixture
async def receiver(js: JetStreamContext) -> AsyncIterator[Receiver]:
    settings = msgspec.convert(
        {"AGENT_RECEIVER_DOMAIN": DOMAIN, "AGENT_RECEIVER_HOST": "127.0.0.1"}
        | {"AGENT_RECEIVER_PORT": 0},
        ReceiverSettings,
    )
    stop = asyncio.Event()

    async def publish(arrival: Arrival) -> None:
        return None

    async with DnsPeer({}) as dns:
        rx = Receiver(
            settings,
            country="ZZ",
            agent_id="ZZ-rx",
            book=AddressBook(),
            publish=publish,
            lookup=Lookup(blocking_resolver(f"127.0.0.1:{dns.port}")),
            clock=WALL,
        )
        watching = asyncio.create_task(watch(js, rx.book, stop))
        await rx.start()
        try:
            await asyncio.wait_for(rx.book.ready.wait(), 10)
            yield rx
        finally:
            stop.set()
            watching.cancel()
            await rx.stop()


async def _rcpt(port: int, local: str) -> int:
    def ask() -> int:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.ehlo("sender.mailprobe.test")
            s.mail("cron@sender.mailprobe.test")
            code, _ = s.rcpt(f"{local}@{DOMAIN}")
            return code

    return await asyncio.to_thread(ask)


async def _until(receiver: Receiver, local: str, held: bool) -> None:
    for _ in range(500):
        if (receiver.book.get(local) is not None) == held:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the book never {'took' if held else 'dropped'} {local}")


async def test_the_bucket_holds_the_active_heartbeat_addresses_and_no_other(
    js: JetStreamContext, pipe_pool: asyncpg.Pool, org: Tenant, receiver: Receiver
) -> None:
    kv = await js.key_value(RECEIVERS_BUCKET)
    stale = new_local_part()
    await kv.put(stale, b'{"monitorId":"gone"}')
    active, active_local = await _heartbeat(pipe_pool, org, "active")
    _, paused_local = await _heartbeat(pipe_pool, org, "disabled")
    put, deleted = await addresses.sync(js, pipe_pool, tenant_of)
    assert put >= 1 and deleted >= 1
    entry = await kv.get(active_local)
    assert entry.value is not None
    held = decode_address(entry.value)
    assert held.tenant == tenant_of(org.org_id)
    assert await addresses.sync(js, pipe_pool, tenant_of) == (0, 0)  # nothing changed
    await _until(receiver, active_local, True)
    await _until(receiver, stale, False)
    assert await _rcpt(receiver.port, active_local) == 250
    assert await _rcpt(receiver.port, paused_local) == 550
    assert await _rcpt(receiver.port, stale) == 550
    # Disabled, then deleted: refused at RCPT once synced.
    async with pipe_pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET status = 'disabled' WHERE id = $1", active)
    assert await addresses.sync(js, pipe_pool, tenant_of) == (0, 1)
    await _until(receiver, active_local, False)
    assert await _rcpt(receiver.port, active_local) == 550
    async with pipe_pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET status = 'active' WHERE id = $1", active)
    await addresses.sync(js, pipe_pool, tenant_of)
    await _until(receiver, active_local, True)
    async with pipe_pool.acquire() as conn:
        await conn.execute("DELETE FROM monitors WHERE id = $1", active)
    await addresses.sync(js, pipe_pool, tenant_of)
    await _until(receiver, active_local, False)
    assert await _rcpt(receiver.port, active_local) == 550


async def test_what_a_process_knows_spares_a_read_per_key_and_a_key_gone_is_put_again(
    js: JetStreamContext, pipe_pool: asyncpg.Pool, org: Tenant
) -> None:
    """`known`, kept across passes as the ingester role keeps it: a pass after the first reads
    no entry of the bucket, and a key another writer deleted is put back at the next pass."""
    kv = await js.key_value(RECEIVERS_BUCKET)
    _, local = await _heartbeat(pipe_pool, org, "active")
    known: dict[str, ReceivingAddress | None] = {}
    await addresses.sync(js, pipe_pool, tenant_of, known)
    assert known[local] == decode_address((await kv.get(local)).value or b"")
    reads: list[str] = []
    real_get = kv.get

    async def counted(key: str) -> Any:
        reads.append(key)
        return await real_get(key)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(KeyValue, "get", lambda self, key, *a, **k: counted(key))
        assert await addresses.sync(js, pipe_pool, tenant_of, known) == (0, 0)
        assert reads == []
        await kv.delete(local)
        put, _ = await addresses.sync(js, pipe_pool, tenant_of, known)
    assert put >= 1
    assert decode_address((await kv.get(local)).value or b"") == known[local]
