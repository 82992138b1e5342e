"""An AlertSite PATCH that changes nothing writes nothing, as a native PATCH never did: the
row's `updated_at` and its due time stay. AlertSite scripts GET a monitor and PATCH the whole
object back; each such round trip used to rewrite the row."""

import asyncpg
import httpx

from tests.alertsite.helpers import MINIMAL, V3, create
from tests.conftest import Tenant


async def _times(pool: asyncpg.Pool, monitor_id: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT updated_at, next_due_at FROM monitors WHERE id = $1", int(monitor_id)
        )
    assert row is not None
    return row


async def test_a_patch_that_changes_nothing_writes_nothing(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Pins: the no-op skip on AlertSite's PATCH (shared with the native API through
    `controller.monitors.writes`): restated values, ignored fields, a GET sent back, the mask
    for a stored password and `enabled: true` on an enabled monitor leave `updated_at` and
    `next_due_at` as they were; a real change still writes."""
    monitor_id = await create(http, tenant, login="u", password="p", locations=[{"id": "DE"}])
    async with pool.acquire() as conn:  # as the scheduler leaves it: on its grid
        await conn.execute(
            "UPDATE monitors SET next_due_at = now() + interval '1 hour',"
            " updated_at = now() - interval '1 day' WHERE id = $1",
            int(monitor_id),
        )
    before = await _times(pool, monitor_id)
    url = f"{V3}/monitors/email-smtp/{monitor_id}"
    got = (await http.get(f"{V3}/monitors/{monitor_id}", headers=tenant.auth())).json()
    for change in (
        {"name": MINIMAL["name"], "interval": MINIMAL["interval"]},
        {"ipv4": "74.125.28.108", "note": "ignored"},
        {**got, **MINIMAL},
        {"password": "********"},
        {"enabled": True},
    ):
        r = await http.patch(url, json=change, headers=tenant.auth())
        assert r.status_code == 200, (change, r.text)
        assert await _times(pool, monitor_id) == before, change

    r = await http.patch(url, json={"name": "Renamed"}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    after = await _times(pool, monitor_id)
    assert after["updated_at"] > before["updated_at"]
    assert after["next_due_at"] == before["next_due_at"]  # a name is no new grid
