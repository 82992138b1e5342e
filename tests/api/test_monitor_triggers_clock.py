"""The monitors' triggers take the writer's instant (issue 79), not the database's: on the real
PostgreSQL a monitor made, paused and given another mailbox on a manual clock years from the
wall is queued for judging, counts its rounds from and has its mailbox changed at the instants
that clock gave."""

from datetime import UTC, datetime, timedelta

import asyncpg

from controller.monitors import store as monitors
from shared.clock import ManualClock
from tests.conftest import make_tenant

MAILBOX = {"hostname": "imap.customer.test", "user": "probe", "password": "x"}


async def test_a_monitor_is_queued_paused_and_changed_at_the_instants_its_writer_gave(
    pool: asyncpg.Pool,
) -> None:
    tenant = await make_tenant(pool)
    clock = ManualClock(datetime(2031, 3, 30, 0, 59, 58, tzinfo=UTC))
    async with pool.acquire() as conn:
        made = await monitors.insert(
            conn,
            tenant.org_id,
            {
                "customer_id": tenant.customer_id,
                "type": "roundtrip",
                "name": "round trip",
                "hostname": "smtp.customer.test",
                "port": 587,
                "status": "active",
                "check_interval": 300,
                "timeout_seconds": 30,
                "allowed_country_codes": ["DE"],
                "config": {"to": "probe@customer.test", "send": {}, "receive": MAILBOX},
            },
            clock.now(),
        )
        queued = await conn.fetchval(
            "SELECT due_at FROM alert_queue WHERE monitor_id = $1", made.id
        )
        assert (made.created_at, made.updated_at, queued) == (clock.now(),) * 3

        clock.advance(3)
        paused = await monitors.update(conn, made.id, {"status": "disabled"}, clock.now())
        since = await conn.fetchval("SELECT rounds_since FROM monitors WHERE id = $1", made.id)
        assert since == paused.updated_at == datetime(2031, 3, 30, 1, 0, 1, tzinfo=UTC)

        clock.advance(timedelta(days=1).total_seconds())
        other = {**MAILBOX, "hostname": "imap2.customer.test"}
        config = {"to": "probe@customer.test", "send": {}, "receive": other}
        await monitors.update(conn, made.id, {"config": config}, clock.now())
        changed = await conn.fetchval(
            "SELECT mailbox_at FROM roundtrip_delivery WHERE monitor_id = $1", made.id
        )
        assert changed == clock.now()
