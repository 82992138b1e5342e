"""The report parsers taken in turn by organization (controller/reports/turns.py), on the real
app over HTTPS and real PostgreSQL: one organization's queue of large reports never holds
another's one-row report for longer than the parses under way."""

import asyncio
import json
import time
from datetime import timedelta

import asyncpg
import httpx

from controller.notify.links import Links
from controller.reports import intake
from controller.reports.sandbox import PARSERS
from shared.timefmt import utcnow
from testkit.reports import made
from testkit.reports.watching import watch
from tests.conftest import Tenant, make_tenant
from tests.reports.test_report_limits import _failures
from tests.reports.test_tls_endpoint import JSON, _address, _monitor

FLOOD = 12  # the attacker's reports queued at once (by HTTPS and its mailbox)
ROWS = 40_000  # each: a second or more of a parser


async def test_one_organizations_queue_of_large_reports_does_not_hold_anothers_report(
    https: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, domain: str
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
    async with watch() as watched:
        flood = [asyncio.create_task(flooded(r)) for r in reports]
        await asyncio.sleep(0.5)  # the flood holds the parsers and its queue
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
    # It waits at most for the parses under way, never for the flood's queue: measured against
    # the flood's own time, so a loaded machine slows both sides alike (first-come, it ended
    # with the flood's last).
    assert theirs_s < 0.4 * max(flood_s), (theirs_s, per_parse, max(flood_s))
