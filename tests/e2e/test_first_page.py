"""The first page within seconds of the first failing check, and the recovery within one round
(issue 80): two monitors on one real SMTP server, checked hourly from two countries, with the
alerter's group wait at its 30 s bound. The server stops and one monitor's round finds it so: the
controller checks the other monitor on that host at once (a confirmation round of a sibling), the
flow incident opens knowing both are down, and its first notice is queued as soon as the sibling
is judged, not 30 s later. The server comes back and one monitor's round sees it: the sibling is
checked again at once, and the flow incident's recovery is queued seconds later, not at the
sibling's next hourly round."""

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from controller.alerting.alerter import Alerter
from controller.jobs.rules import JobIds
from shared.timefmt import parse_iso
from testkit.alerting.wired import wired_alerter
from testkit.peers.smtp import SmtpPeer
from tests.conftest import Tenant
from tests.e2e.conftest import ABROAD, HOME, Agents, Controller
from tests.e2e.helpers import make_due_now, of_rounds_since, smtp_monitor, wait_results

FIRST_PAGE_S = 10.0  # from the first failing check to the flow incident's first notice
GROUP_WAIT_S = 30  # the bound: the notice must not wait for it


@pytest.fixture
async def waiting_alerter(controller: Controller, job_ids: JobIds) -> AsyncIterator[Alerter]:
    """The alerter as `serve` runs it with the default group wait and interval."""
    running = wired_alerter(
        controller.pool,
        controller.js,
        job_ids,
        alert_eval_interval_seconds=0.05,
        incident_group_wait_seconds=GROUP_WAIT_S,
        incident_group_interval_seconds=300,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    yield running
    stop.set()
    await task


async def _outbox(controller: Controller, ids: list[str]) -> list[dict[str, Any]]:
    async with controller.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT o.kind, o.created_at, o.dedupe_key FROM notification_outbox o"
            " JOIN monitors m ON m.id = o.monitor_id WHERE m.public_id = ANY($1::uuid[])"
            " ORDER BY o.created_at",
            ids,
        )
    return [dict(r) for r in rows]


async def _wait_outbox(
    controller: Controller, ids: list[str], kind: str, within: float
) -> datetime:
    deadline = time.monotonic() + within
    while True:
        found = [r for r in await _outbox(controller, ids) if r["kind"] == kind]
        if found:
            at: datetime = found[0]["created_at"]
            return at
        assert time.monotonic() < deadline, f"no {kind} notice queued within {within} s"
        await asyncio.sleep(0.05)


async def _first(
    api: httpx.AsyncClient, org: Tenant, pid: str, status: str, since: datetime
) -> datetime:
    items = await wait_results(
        api,
        org,
        pid,
        lambda i: any(r["status"] == status and parse_iso(r["finishedAt"]) >= since for r in i),
        within=15,
    )
    return min(
        parse_iso(r["finishedAt"])
        for r in items
        if r["status"] == status and parse_iso(r["finishedAt"]) >= since
    )


async def test_the_first_page_comes_once_the_servers_other_monitors_are_checked(
    api: httpx.AsyncClient,
    org: Tenant,
    controller: Controller,
    agents: Agents,
    waiting_alerter: Alerter,
) -> None:
    peer = SmtpPeer()
    await peer.__aenter__()
    port = peer.port
    countries = [HOME, ABROAD]
    made = [
        await smtp_monitor(
            api,
            org,
            port,
            name=name,
            allowedCheckCountryCodes=countries,
            timeoutSeconds=2,
            notificationEmail="oncall@customer.test",
        )
        for name in ("submission", "relay")
    ]
    first, sibling = (m["publicId"] for m in made)
    ids = [first, sibling]
    try:
        for pid in ids:
            due = await make_due_now(controller.pool, pid)
            await wait_results(api, org, pid, of_rounds_since(due, 2), within=15)
    finally:
        await peer.__aexit__(None, None, None)
    # The server is gone. Only the first monitor's round is due: the sibling's next round is an
    # hour away.
    stopped = await make_due_now(controller.pool, first)
    first_failure = await _first(api, org, first, "down", stopped)
    paged = await _wait_outbox(controller, ids, "down", GROUP_WAIT_S + 15)
    assert (paged - first_failure).total_seconds() < FIRST_PAGE_S, (paged, first_failure)
    # The sibling was checked at once and is part of what the first page says.
    sibling_failure = await _first(api, org, sibling, "down", stopped)
    assert (sibling_failure - first_failure).total_seconds() < FIRST_PAGE_S
    async with controller.pool.acquire() as conn:
        flows = await conn.fetch(
            "SELECT i.flow_incident_id, m.public_id FROM incidents i JOIN monitors m"
            " ON m.id = i.monitor_id WHERE m.public_id = ANY($1::uuid[]) AND i.ended_at IS NULL",
            ids,
        )
    assert {str(r["public_id"]) for r in flows} == set(ids)
    assert len({r["flow_incident_id"] for r in flows}) == 1, "one server, one flow incident"
    downs = [r for r in await _outbox(controller, ids) if r["kind"] == "down"]
    assert len({r["dedupe_key"] for r in downs}) == 1, downs  # one notice, not one per monitor

    # The server comes back; only the first monitor's round is due.
    back = SmtpPeer().at("127.0.0.1", port)
    await back.__aenter__()
    try:
        returned = await make_due_now(controller.pool, first)
        first_pass = await _first(api, org, first, "up", returned)
        told = await _wait_outbox(controller, ids, "recovered", 30)
        assert (told - first_pass).total_seconds() < FIRST_PAGE_S, (told, first_pass)
    finally:
        await back.__aexit__(None, None, None)
