"""A blocklist that is not believed is an operator finding (issue 65): Spamhaus answering every
query with its "public resolver" error from one country is `unhealthy` there, told once to the
owners of the organization whose monitor asked (naming the DQS key and AGENT_BLOCKLIST_RESOLVER),
shown by `GET /api/oracles` and never a listing; the healthy list of the same country is not
told."""

from collections.abc import AsyncIterator

import httpx
import pytest

from controller.operator_health import store as health_db
from controller.operator_health.rules import HOLD
from controller.oracles import store as oracles_db
from controller.oracles.watch import OracleWatch
from controller.sidechecks.blocklists.oracles import ListOracles
from shared.clock import WALL
from shared.timefmt import utcnow
from testkit.peers.dnsbl import DnsblPeer
from tests.alerting.conftest import Rig
from tests.alerting.test_blocklists import HOST, LISTS, ZEN, lookups, views

COUNTRY = "PT"  # no other test's oracle rows use it
IP = "93.184.216.99"  # a query name only


@pytest.fixture(autouse=True)
async def no_fleet_notices_left(rig: Rig) -> AsyncIterator[None]:
    """The notices about no monitor outlive the test's monitors: removed, so no later test's
    outbox worker sends them."""
    yield
    async with rig.pool.acquire() as conn:
        await conn.execute("DELETE FROM notification_outbox WHERE dedupe_key LIKE 'oracle:%'")


async def test_spamhaus_refusing_a_countrys_resolver_is_told_once_with_what_to_set(
    rig: Rig, api: httpx.AsyncClient
) -> None:
    monitor = await rig.monitor([COUNTRY])
    t0 = utcnow().replace(microsecond=0)
    async with DnsblPeer(views(IP, listed_in_rbl=False), records={(HOST, "A"): [IP]}) as pt:
        await lookups(rig, monitor, {COUNTRY: pt}, t0)
    watch = OracleWatch(rig.pool, [ListOracles(LISTS, 6 * 3600)], dns_window_s=3600, clock=WALL)
    await watch.run_once(t0)
    await watch.run_once(t0 + HOLD)
    await watch.run_once(t0 + HOLD * 2)
    async with rig.pool.acquire() as conn:
        health = await health_db.healths(conn, oracles_db.HEALTH)
    assert health[(ZEN.zone, COUNTRY)].state == "unhealthy"
    assert health[("rbl.example.net", COUNTRY)].state == "healthy"
    notes = await rig.fetch(
        "SELECT subject, body_text, source FROM notification_outbox WHERE organization_id = $1"
        # the owners' (make_tenant's `operator` user, an operator, gets its own)
        " AND dedupe_key LIKE $2 AND dedupe_key NOT LIKE '%:operators:%' ORDER BY id",
        rig.tenant.org_id,
        f"oracle:%:{COUNTRY}:%",
    )
    told = {n["subject"] for n in notes}
    assert any("Spamhaus ZEN" in t for t in told), told
    assert not any("Example RBL" in t for t in told)
    zen = next(n for n in notes if "Spamhaus ZEN" in n["subject"])
    assert zen["source"] == "fleet"
    assert "AGENT_SPAMHAUS_DQS_KEY" in zen["body_text"]
    assert "public or open resolver" in zen["body_text"]
    assert len([n for n in notes if "Spamhaus ZEN" in n["subject"]]) == 1
    shown = await api.get("/api/oracles", headers=rig.tenant.auth("owner"))
    by = {(o["oracle"], o["country"]): o for o in shown.json()["oracles"]}
    assert "AGENT_BLOCKLIST_RESOLVER" in by[(ZEN.zone, COUNTRY)]["whatToSet"]
    listings = await rig.fetch(
        "SELECT * FROM blocklist_listings WHERE monitor_id = $1", monitor["id"]
    )
    assert listings == []
