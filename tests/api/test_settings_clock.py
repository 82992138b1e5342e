"""Settings changed through the API's stores carry the instant their handler is given (issue
79), not the database's `now()`: an organization's alert thresholds, a monitor's own, its
report settings and a notification channel, written on a manual clock at a month's end on the
real PostgreSQL."""

from datetime import UTC, datetime

import asyncpg

from controller.monitors import thresholds_store as thresholds
from controller.notify import channel_store
from controller.reports import store as reports
from controller.sidechecks.reports.rules import ReportSettings
from shared.clock import ManualClock
from tests.conftest import Tenant, make_tenant


async def test_settings_are_stamped_by_the_clock_given(pool: asyncpg.Pool) -> None:
    tenant: Tenant = await make_tenant(pool)
    org = tenant.org_id
    clock = ManualClock(datetime(2027, 2, 28, 23, 59, 59, tzinfo=UTC))
    async with pool.acquire() as conn:
        monitor: int = await conn.fetchval(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds)"
            " VALUES ($1, $2, 'smtp', 'mx', 'mx.example.com', 25, 'active', 60, 30)"
            " RETURNING id",
            org,
            tenant.customer_id,
        )
        await thresholds.put_org_thresholds(conn, org, 0.5, 2, 2, now=clock.now())
        clock.advance(1)  # into March
        overrides = {"failure_threshold": 0.5, "down_after_rounds": 3, "recover_after_rounds": 1}
        await thresholds.put_monitor_overrides(conn, monitor, overrides, clock.now())
        await reports.save_settings(conn, org, ReportSettings(window_days=30), clock.now())
        channel = await channel_store.insert(
            conn,
            org,
            {
                "name": "ops",
                "kind": "webhook",
                "url": "enc:x",
                "url_shown": "https://h/",
                "secret": None,
                "chat_id": None,
            },
        )
        values = {
            "name": "ops 2",
            "url": "enc:y",
            "url_shown": "https://h/2",
            "secret": None,
            "chat_id": None,
        }
        await channel_store.update(conn, channel, values, clock.now())
        stamped = await conn.fetchrow(
            "SELECT (SELECT updated_at FROM organization_alert_settings WHERE organization_id = $1)"
            " AS org, (SELECT updated_at FROM monitor_alert_settings WHERE monitor_id = $2)"
            " AS monitor, (SELECT updated_at FROM report_settings WHERE organization_id = $1)"
            " AS report, (SELECT updated_at FROM notification_channels WHERE id = $3) AS channel",
            org,
            monitor,
            channel,
        )
    march = datetime(2027, 3, 1, 0, 0, 0, tzinfo=UTC)
    assert stamped is not None  # a SELECT without FROM: one row
    assert dict(stamped) == {
        "org": datetime(2027, 2, 28, 23, 59, 59, tzinfo=UTC),
        "monitor": march,
        "report": march,
        "channel": march,
    }
