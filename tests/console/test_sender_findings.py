"""The senders' grading in the console: arrivals stored as the intake stores them and graded
(controller.posture.senders) show on the monitor's page and on `/console/findings` as any
finding, titled as people write them, with what to do, for any role of the organization."""

import uuid
from typing import Any

import asyncpg
import httpx

from controller.arrivals.store import keep
from controller.notify.links import Links
from controller.posture.senders import Grader
from shared.arrivals import Arrival, Verdicts
from shared.timefmt import iso_ms, utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.console.helpers import Browserish


async def graded(pool: asyncpg.Pool, monitor: dict[str, Any]) -> None:
    """One unsigned message that reached DE's plain twin in the clear."""
    now = utcnow()
    arrival = Arrival(
        arrival_id=str(uuid.uuid4()),
        monitor_id=monitor["publicId"],
        country="DE",
        agent_id="DE-1",
        arrived_at=iso_ms(now),
        peer="192.0.2.7",
        starttls_offered=False,
        listener="plain",
        verdicts=Verdicts(spf="pass", dkim="none", dmarc="pass"),
    )
    async with pool.acquire() as conn, conn.transaction():
        new = await keep(conn, [arrival])
        await Grader(Links()).grade(conn, new, now)


async def test_grading_findings_show_on_the_monitor_and_the_findings_page(
    client: Browserish, tenant: Tenant, http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    monitor = await create(http, tenant, "smtp", name="Outbound relay")
    await graded(pool, monitor)
    client.session = tenant.tokens["readonly"]
    page = (await client.get(f"/console/monitors/{monitor['publicId']}")).text
    open_part = page[page.index('id="open-findings"') : page.index("<h3>History</h3>")]
    for code in ("sender_tls_not_enforced", "sender_dkim_missing"):
        assert open_part.count(f'data-code="{code}"') == 1, code
    assert "Sender TLS not enforced" in open_part and "Sender DKIM missing" in open_part
    listing = (await client.get("/console/findings")).text
    assert 'data-code="sender_tls_not_enforced"' in listing
    assert "Outbound relay" in listing and "DE" in listing
