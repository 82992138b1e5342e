"""The first page within seconds of the first failing check, and the recovery within one round
(issue 80): two monitors on one real SMTP server, checked hourly from two countries, with the
alerter's group wait at its 30 s bound. The server stops and one monitor's round finds it so: the
controller checks the other monitor on that host at once (a confirmation round of a sibling), the
flow incident opens knowing both are down, and its first notice is queued as soon as the sibling
is judged, not 30 s later. The server comes back and one monitor's round sees it: the sibling is
checked again at once, and the flow incident's recovery is queued seconds later, not at the
sibling's next hourly round.

Time is the subject, so the controller runs on a skipping clock (tests/e2e/virtual.py): the
scheduler's and the alerter's passes are stepped, and a wait nobody works through (the group
wait) is skipped, so a notice that waited for it shows 30 s late. Every bound below is in the
clock's seconds; the checks themselves run in real time."""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from controller.alerting.alerter import Alerter
from shared.timefmt import parse_iso
from testkit.alerting.wired import wired_alerter
from testkit.peers.smtp import SmtpPeer
from tests.conftest import Tenant
from tests.e2e.helpers import smtp_monitor
from tests.e2e.virtual import FIRST, SECOND, Virtual, due_now, stepped_results

FIRST_PAGE_S = 10.0  # from the first failing check to the flow incident's first notice
GROUP_WAIT_S = 30  # the bound: the notice must not wait for it


@pytest.fixture
async def waiting_alerter(virtual: Virtual) -> AsyncIterator[Alerter]:
    """The stepped alerter with the default group wait and interval, for the test."""
    stepped = virtual.stepper.alerter
    virtual.stepper.alerter = wired_alerter(
        virtual.pool,
        virtual.js,
        virtual.job_ids,
        clock=virtual.clock.now,
        incident_group_wait_seconds=GROUP_WAIT_S,
        incident_group_interval_seconds=300,
    )
    yield virtual.stepper.alerter
    virtual.stepper.alerter = stepped


async def _outbox(virtual: Virtual, ids: list[str]) -> list[dict[str, Any]]:
    rows = await virtual.pool.fetch(
        "SELECT o.kind, o.created_at, o.dedupe_key FROM notification_outbox o"
        " JOIN monitors m ON m.id = o.monitor_id WHERE m.public_id = ANY($1::uuid[])"
        " ORDER BY o.created_at",
        ids,
    )
    return [dict(r) for r in rows]


async def _queued(virtual: Virtual, ids: list[str], kind: str, within: float) -> datetime:
    """When the first `kind` notice of the monitors was queued, stepping until it is."""

    async def found() -> tuple[datetime] | None:
        rows = [r for r in await _outbox(virtual, ids) if r["kind"] == kind]
        return (rows[0]["created_at"],) if rows else None

    (at,) = await virtual.stepper.until(f"a {kind} notice queued", found, within)
    return at


async def _first(
    virtual: Virtual, api: httpx.AsyncClient, org: Tenant, pid: str, status: str, since: datetime
) -> datetime:
    def seen(r: dict[str, Any]) -> bool:
        return r["status"] == status and parse_iso(r["finishedAt"]) >= since

    items = await stepped_results(
        virtual, api, org, pid, lambda i: any(seen(r) for r in i), within=15
    )
    return min(parse_iso(r["finishedAt"]) for r in items if seen(r))


async def test_the_first_page_comes_once_the_servers_other_monitors_are_checked(
    virtual_api: httpx.AsyncClient,
    virtual_org: Tenant,
    virtual: Virtual,
    waiting_alerter: Alerter,
) -> None:
    api, org = virtual_api, virtual_org
    peer = SmtpPeer()
    await peer.__aenter__()
    port = peer.port
    made = [
        await smtp_monitor(
            api,
            org,
            port,
            name=name,
            allowedCheckCountryCodes=[FIRST, SECOND],
            timeoutSeconds=2,
            notificationEmail="oncall@customer.test",
        )
        for name in ("submission", "relay")
    ]
    first, sibling = (m["publicId"] for m in made)
    ids = [first, sibling]
    try:
        # Each monitor's first round (at creation) from both countries, the server there.
        for pid in ids:
            items = await stepped_results(virtual, api, org, pid, lambda i: len(i) >= 2, 15)
            assert [i["status"] for i in items] == ["up", "up"], items
    finally:
        await peer.__aexit__(None, None, None)
    # The server is gone. Only the first monitor's round is due: the sibling's next round is an
    # hour away.
    stopped = await due_now(virtual, first)
    first_failure = await _first(virtual, api, org, first, "down", stopped)
    paged = await _queued(virtual, ids, "down", GROUP_WAIT_S + 15)
    assert (paged - first_failure).total_seconds() < FIRST_PAGE_S, (paged, first_failure)
    # The sibling was checked at once and is part of what the first page says.
    sibling_failure = await _first(virtual, api, org, sibling, "down", stopped)
    assert (sibling_failure - first_failure).total_seconds() < FIRST_PAGE_S
    flows = await virtual.pool.fetch(
        "SELECT i.flow_incident_id, m.public_id FROM incidents i JOIN monitors m"
        " ON m.id = i.monitor_id WHERE m.public_id = ANY($1::uuid[]) AND i.ended_at IS NULL",
        ids,
    )
    assert {str(r["public_id"]) for r in flows} == set(ids)
    assert len({r["flow_incident_id"] for r in flows}) == 1, "one server, one flow incident"
    downs = [r for r in await _outbox(virtual, ids) if r["kind"] == "down"]
    assert len({r["dedupe_key"] for r in downs}) == 1, downs  # one notice, not one per monitor

    # The server comes back; only the first monitor's round is due.
    back = SmtpPeer().at("127.0.0.1", port)
    await back.__aenter__()
    try:
        returned = await due_now(virtual, first)
        first_pass = await _first(virtual, api, org, first, "up", returned)
        told = await _queued(virtual, ids, "recovered", 30)
        assert (told - first_pass).total_seconds() < FIRST_PAGE_S, (told, first_pass)
    finally:
        await back.__aexit__(None, None, None)
