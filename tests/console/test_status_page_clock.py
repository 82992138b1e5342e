"""A public status page is built at the instant it is given (issue 79): a notice written, resolved
and aged out, and the page's day bars, follow a manual clock driven across a year's end on the
real PostgreSQL, with no sleeping; nothing of it reads the database's `now()`."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import httpx

from controller.statuspages import notices_store, pages_store
from controller.web.console import status
from shared.clock import ManualClock
from tests.api.helpers import create
from tests.conftest import make_tenant
from tests.console.test_status_pages import _row_id


async def test_notices_and_days_follow_the_clock_given(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(pool)
    shown = await create(http, tenant, "smtp", name="Relay", hostname="relay.acme.test")
    monitor_id = await _row_id(pool, shown["publicId"])
    clock = ManualClock(datetime(2026, 12, 31, 23, 30, tzinfo=UTC))
    slug = f"clock-{tenant.org_id}"
    async with pool.acquire() as conn, conn.transaction():
        await pages_store.save(
            conn, tenant.customer_id, tenant.org_id, slug, "Acme", False, [monitor_id], clock.now()
        )
        page = await notices_store.page_of_customer(conn, tenant.customer_id, tenant.org_id)
        assert page is not None
        author: int = await conn.fetchval(
            "SELECT id FROM users WHERE organization_id = $1 LIMIT 1", tenant.org_id
        )
        await notices_store.create(
            conn, page.id, "Relay slow", "minor", "investigating", "Looking.", author, clock.now()
        )
    async with pool.acquire() as conn:
        found = await pages_store.by_slug(conn, slug)
    assert found is not None
    sp, ids = found

    written = clock.now()
    content = await status._page(pool, sp, ids, clock.now())
    assert [(n["title"], n["createdAt"], n["resolvedAt"]) for n in content["notices"]] == [
        ("Relay slow", written, None)
    ]
    bars = content["monitors"][0]["bars"]
    assert bars[-1]["day"] == "2026-12-31" and len(bars) == status.UPTIME_DAYS

    clock.advance(3600)  # into the new year
    async with pool.acquire() as conn, conn.transaction():
        notice = content["notices"][0]
        row = await notices_store.by_public_id(conn, UUID(notice["id"]), tenant.org_id)
        assert row is not None
        await notices_store.add_update(conn, row.id, "resolved", "Fixed.", author, clock.now())
    content = await status._page(pool, sp, ids, clock.now())
    [resolved] = content["notices"]
    assert resolved["resolvedAt"] == clock.now() == written + timedelta(hours=1)
    assert [u["at"] for u in resolved["updates"]] == [clock.now(), written]
    assert content["monitors"][0]["bars"][-1]["day"] == "2027-01-01"

    # The page keeps INCIDENT_DAYS of notices: a day before they end it shows it, a day after not.
    clock.advance((status.INCIDENT_DAYS - 1) * 86400.0)
    assert len((await status._page(pool, sp, ids, clock.now()))["notices"]) == 1
    clock.advance(2 * 86400.0)
    assert (await status._page(pool, sp, ids, clock.now()))["notices"] == []
