"""Monitors made through the API, rounds made due, results read back through the API."""

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from shared.timefmt import parse_iso
from tests.api.helpers import SMTP
from tests.conftest import Tenant


async def smtp_monitor(
    api: httpx.AsyncClient, org: Tenant, port: int, **fields: Any
) -> dict[str, Any]:
    """An SMTP monitor of 127.0.0.1:`port` (plain SMTP, no AUTH), checked hourly so that no
    scheduled round comes by itself while a test runs."""
    body = {
        "customerId": org.customer_public_id,
        "name": "e2e",
        "hostname": "127.0.0.1",
        "port": port,
        "checkInterval": 3600,
        "timeoutSeconds": 5,
        "smtpConfig": {},
        **fields,
    }
    r = await api.post(SMTP, json=body, headers=org.auth())
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def make_due_now(pool: asyncpg.Pool, public_id: str) -> datetime:
    """The monitor's next round is due now: the running scheduler takes it within its idle
    wait (≤ 0.5 s). A plan it makes meanwhile (the monitor's first round, claimed on creation)
    holds this row's lock; the due time is taken once that lock is ours, so it is after any
    round claimed before. Returns it: the round made due is the first whose `scheduledAt` is at
    or after it (`of_rounds_since`)."""
    async with pool.acquire() as conn:
        due: datetime = await conn.fetchval(
            "UPDATE monitors SET next_due_at = clock_timestamp() WHERE public_id = $1::uuid"
            " RETURNING next_due_at",
            public_id,
        )
    return due


async def no_round_due(pool: asyncpg.Pool, public_id: str) -> None:
    """The monitor's next scheduled round a day away, for a test that sends every round itself.
    After its first round a monitor's next is the first point of its grid, anywhere in its
    interval: seconds later now and then, and a check-now joins a round trip's round in flight
    instead of sending its own."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET next_due_at = clock_timestamp() + interval '1 day'"
            " WHERE public_id = $1::uuid",
            public_id,
        )


async def monitor(api: httpx.AsyncClient, org: Tenant, public_id: str) -> dict[str, Any]:
    r = await api.get(f"{SMTP}/{public_id}", headers=org.auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def results(
    api: httpx.AsyncClient, org: Tenant, public_id: str, path: str = SMTP
) -> dict[str, Any]:
    r = await api.get(f"{path}/{public_id}/results", headers=org.auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def wait_results(
    api: httpx.AsyncClient,
    org: Tenant,
    public_id: str,
    until: Callable[[list[dict[str, Any]]], bool],
    within: float = 5.0,
    every: float = 0.1,
    path: str = SMTP,
) -> list[dict[str, Any]]:
    """Poll the results API (of `path`'s monitors) until `until(items)` holds; fail after
    `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        items: list[dict[str, Any]] = (await results(api, org, public_id, path))["items"]
        if until(items):
            return items
        assert time.monotonic() < deadline, f"results never matched within {within} s: {items}"
        await asyncio.sleep(every)


def count(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda items: len(items) >= n


def of_rounds_since(due: datetime, n: int) -> Callable[[list[dict[str, Any]]], bool]:
    """At least `n` results of rounds scheduled at or after `due` (`make_due_now`)."""
    return lambda items: len(since(due, items)) >= n


def since(due: datetime, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results of rounds scheduled at or after `due` (a result's `scheduledAt` is its
    round's due time cut to the millisecond)."""
    floor = due.replace(microsecond=due.microsecond // 1000 * 1000)
    return [i for i in items if parse_iso(i["scheduledAt"]) >= floor]
