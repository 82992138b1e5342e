"""The report parsers taken in turn by organization (controller/reports/turns.py), on the real
app over HTTPS and real PostgreSQL: one organization's queue of large reports never holds
another's one-row report for longer than the parses under way. Judged by order, not by seconds:
the first parser given after the other report came to the gate is its own, while the flood
still has reports waiting."""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import pytest

from controller.notify.links import Links
from controller.reports import intake
from controller.reports.sandbox import PARSERS, SANDBOX
from shared.timefmt import utcnow
from testkit.reports import made
from testkit.reports.watching import watch
from tests.conftest import Tenant, make_tenant
from tests.reports.test_report_limits import _failures
from tests.reports.test_tls_endpoint import JSON, _address, _monitor

FLOOD = 6  # the attacker's reports queued at once (by HTTPS and its mailbox)
ROWS = 10_000  # each: about half a second of a parser


def gate_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """What the parsers' gate does, in order: ("came", org) when a report reaches it, ("took",
    org) when it gives the organization a parser."""
    events: list[tuple[str, int]] = []
    turns = SANDBOX.turns
    take, turn = turns._take, turns.turn

    def taking(org: int) -> None:
        events.append(("took", org))
        take(org)

    @contextlib.asynccontextmanager
    async def coming(org: int) -> AsyncIterator[None]:
        events.append(("came", org))
        async with turn(org):
            yield

    monkeypatch.setattr(turns, "_take", taking)
    monkeypatch.setattr(turns, "turn", coming)
    return events


async def test_one_organizations_queue_of_large_reports_does_not_hold_anothers_report(
    https: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    domain: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _monitor(https, tenant, domain)
    bystander = await make_tenant(pool)
    theirs = f"bystander-{domain}"
    await _monitor(https, bystander, theirs)
    their_path = await _address(https, bystander, theirs, str(https.base_url))
    old = utcnow() - timedelta(days=400)
    reports = [
        made.tls_gzip(
            made.tls_json(domain, failures=_failures(domain, ROWS, tag=f"r{i}-"), begins=old)
        )
        for i in range(FLOOD + 1)
    ]

    async def flooded(data: bytes) -> float:
        began = time.monotonic()
        taken = await intake.take(
            pool, tenant.org_id, data, "https", "t", Links(), domain, kind="tls", now=utcnow()
        )
        assert taken.reason == "too_old", taken
        return time.monotonic() - began

    per_parse = await flooded(reports.pop())  # one alone: its parse and its refusal
    events = gate_events(monkeypatch)
    async with watch() as watched:
        flood = [asyncio.create_task(flooded(r)) for r in reports]
        # The flood holds the parsers and its queue before the other report comes.
        while SANDBOX.turns.waiting().get(tenant.org_id, 0) < FLOOD - PARSERS:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert SANDBOX.turns.held.get(tenant.org_id) == PARSERS
        began = time.monotonic()
        one = json.dumps(made.tls_json(theirs)).encode()
        r = await https.post(their_path, content=one, headers=JSON)
        theirs_s = time.monotonic() - began
        health_began = time.monotonic()
        assert (await https.get("/health")).status_code == 200
        health_ms = 1000 * (time.monotonic() - health_began)
        flood_s = await asyncio.gather(*flood)
    assert r.status_code == 200 and r.json()["stored"] is True, r.text
    print(
        f"{FLOOD} reports of {ROWS} rows from one organization ({PARSERS} parsers; one alone"
        f" {per_parse:.1f} s, the last in {max(flood_s):.1f} s): another organization's one-row"
        f" report in {theirs_s:.2f} s; /health {health_ms:.0f} ms; {watched.said()}"
    )
    # It came while the flood held every parser and had reports waiting (first-come, those
    # would all go before it); the next parser freed is its own.
    arrived = events.index(("came", bystander.org_id))
    before = events[:arrived]
    assert before.count(("came", tenant.org_id)) > before.count(("took", tenant.org_id)), events
    given = [org for what, org in events[arrived:] if what == "took"]
    assert given[0] == bystander.org_id, events
