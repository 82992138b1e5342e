"""The shared blocklist answers against a member of another organization (issue 65): a round whose
budget it spends on a mail domain whose DNS never answers, asking about another organization's
address and the lists' test entries, stores nothing over the good answers, shares nothing as
fresh, leaves the other organization's listing raised and the lists healthy; what each
organization sees is dated by its own rounds, never by the other's."""

from datetime import datetime, timedelta

import asyncpg
import msgspec

from agent.sidechecks.blocklists import BlocklistProbe
from controller.ingest.store import decode_result
from controller.monitors import store as monitors
from controller.monitors.kinds import ALL_TYPES
from controller.monitors.store import Monitor
from controller.sidechecks.blocklists import store as db
from controller.sidechecks.blocklists.rules import Fresh, ask
from controller.sidechecks.blocklists.view import monitor_standing
from controller.sidechecks.blocklists.watch import BlocklistWatch, FreshNames
from shared.clock import WALL
from shared.messages import CheckResult
from shared.sidechecks.blocklists import Reputation
from shared.sidechecks.blocklists_bound import BUDGET_SPENT
from shared.timefmt import iso_ms, utcnow
from testkit.peers.dnsbl import DnsblPeer
from tests.alerting.conftest import LINKS, Rig
from tests.alerting.test_blocklists import HOST, LISTS, RBL, arrived, lookups, views
from tests.conftest import make_tenant

VICTIM_IP = "93.184.216.77"  # a query name only
SILENT = "never-answers.test"


async def monitor_of(rig: Rig, row: asyncpg.Record) -> Monitor:
    async with rig.pool.acquire() as conn:
        found = await monitors.get(conn, row["id"], ALL_TYPES, None)
    assert found is not None
    return found


def result(monitor_id: str, cc: str, when: datetime, reputation: Reputation) -> CheckResult:
    at = iso_ms(when)
    return CheckResult(
        job_id=f"job-{monitor_id}-{cc}-{at}",
        monitor_id=monitor_id,
        monitor_type="smtp",
        country=cc,
        agent_id=f"{cc}-agent",
        scheduled_at=at,
        started_at=at,
        finished_at=at,
        status="up",
        side_checks={"blocklists": reputation},
    )


async def test_a_round_that_spends_its_budget_poisons_no_other_organizations_answers(
    rig: Rig,
) -> None:
    victim = await rig.monitor(["DE"])
    attacker_org = await make_tenant(rig.pool)
    attacker = await rig.monitor(["DE"], tenant=attacker_org)
    watch = BlocklistWatch(rig.pool, LISTS, interval_s=6 * 3600, hold_s=0, links=LINKS, clock=WALL)
    t0 = (utcnow() - timedelta(hours=2)).replace(microsecond=0)
    t1 = t0 + timedelta(hours=1)
    records = {(HOST, "A"): [VICTIM_IP]}
    async with DnsblPeer(views(VICTIM_IP, listed_in_rbl=True), records=records) as de:
        await lookups(rig, victim, {"DE": de}, t0)
        await watch.run_once(t0)
        told = len(await rig.outbox_rows(victim))
        assert told == 1  # raised (no hold)
        # The attacker lists the victim's address and names a mail domain whose DNS never
        # answers, with the smallest budget: its round asks as if nothing were fresh.
        de.silent = (SILENT,)
        listed = {"ips": [VICTIM_IP], "domains": []}
        probe = BlocklistProbe(resolver=de.address, clock=WALL)
        spent = await probe.probe(ask(LISTS, SILENT, Fresh(), listed), HOST, 0.3)
    errors = {a.error for a in spent.answers}
    assert errors == {BUDGET_SPENT}, errors  # every answer is the round's own unknown
    assert {a.name for a in spent.answers} >= {VICTIM_IP, "127.0.0.2", "127.0.0.1"}
    decoded = decode_result(
        msgspec.json.encode(result(str(attacker["public_id"]), "DE", t1, spent))
    )
    async with rig.pool.acquire() as conn, conn.transaction():
        await db.record(conn, [arrived(decoded)])
    # The good answers stand, still fresh; no failure is the list's.
    (row,) = await rig.fetch(
        "SELECT a, answered_at FROM blocklist_answers WHERE zone = $1 AND name = $2"
        " AND country = 'DE'",
        RBL.zone,
        VICTIM_IP,
    )
    assert row["a"] == ["127.0.0.2"] and row["answered_at"] == t0
    assert not await rig.fetch("SELECT * FROM blocklist_failures WHERE zone = $1", RBL.zone)
    fresh = FreshNames(rig.pool, LISTS, 6 * 3600, clock=WALL)
    await fresh.refresh(t1 + timedelta(minutes=1))
    answered = fresh.fresh("DE").on[RBL.zone]
    assert VICTIM_IP in answered and "127.0.0.2" in answered
    # The victim's listing stays raised, nothing more is told; the list stays healthy.
    await watch.run_once(t1 + timedelta(minutes=1))
    (listing,) = await rig.fetch(
        "SELECT * FROM blocklist_listings WHERE monitor_id = $1", victim["id"]
    )
    assert listing["raised_at"] is not None and listing["cleared_at"] is None
    assert len(await rig.outbox_rows(victim)) == told
    victim_m, attacker_m = await monitor_of(rig, victim), await monitor_of(rig, attacker)
    async with rig.pool.acquire() as conn:
        mine = await monitor_standing(conn, victim_m, LISTS, 6 * 3600, utcnow())
        theirs = await monitor_standing(conn, attacker_m, LISTS, 6 * 3600, utcnow())
    assert mine.health[(RBL.zone, "DE")].state == "healthy"

    def rbl_cell(standing: object, name: str) -> object:
        (entry,) = [n for n in standing.names if n.name == name]  # type: ignore[attr-defined]
        (on,) = [o for o in entry.lists if o.list.zone == RBL.zone]
        (cell,) = on.cells
        return cell

    victim_cell = rbl_cell(mine, VICTIM_IP)
    assert victim_cell.state == "listed" and victim_cell.checked_at == t0  # type: ignore[attr-defined]
    # The attacker sees the answer its own question would have had, dated by its own round:
    # nothing says when (or that) anyone else asked.
    attacker_cell = rbl_cell(theirs, VICTIM_IP)
    assert attacker_cell.state == "listed"  # type: ignore[attr-defined]
    assert attacker_cell.checked_at == t1  # type: ignore[attr-defined]
    assert theirs.checked[(RBL.zone, "DE")] == t1


async def test_a_lists_real_failure_explains_its_health_only_without_a_real_answer(
    rig: Rig,
) -> None:
    """SERVFAIL from the list is kept as its latest failure there: the list stays healthy
    while its test entries' real answers are within two intervals, and is `unknown` saying
    why once none is left."""
    monitor = await rig.monitor(["FR"])
    watch_lists = LISTS
    t0 = (utcnow() - timedelta(hours=20)).replace(microsecond=0)
    records = {(HOST, "A"): [VICTIM_IP]}
    async with DnsblPeer(views(VICTIM_IP, listed_in_rbl=False), records=records) as fr:
        await lookups(rig, monitor, {"FR": fr}, t0)
    # The list's servers fail now: SERVFAIL for everything asked of it.
    zones = {z: v for z, v in views(VICTIM_IP, listed_in_rbl=False).items() if z != RBL.zone}
    async with DnsblPeer(zones, records=records) as fr:
        fr.servfail = {f"{n}.{RBL.zone}" for n in ("2.0.0.127", "1.0.0.127")}
        fr.servfail |= {".".join(reversed(VICTIM_IP.split("."))) + f".{RBL.zone}"}
        probe = BlocklistProbe(resolver=fr.address, clock=WALL)
        failed = await probe.probe(ask(watch_lists, None, Fresh()), HOST, 5)
    assert any(a.zone == RBL.zone and a.a is None for a in failed.answers)
    later = t0 + timedelta(hours=1)
    decoded = decode_result(
        msgspec.json.encode(result(str(monitor["public_id"]), "FR", later, failed))
    )
    async with rig.pool.acquire() as conn, conn.transaction():
        await db.record(conn, [arrived(decoded)])
    m = await monitor_of(rig, monitor)
    async with rig.pool.acquire() as conn:
        soon = await monitor_standing(conn, m, LISTS, 6 * 3600, later)
        gone = await monitor_standing(
            conn, m, LISTS, 6 * 3600, t0 + timedelta(hours=12, minutes=30)
        )
    assert soon.health[(RBL.zone, "FR")].state == "healthy"
    health = gone.health[(RBL.zone, "FR")]
    assert health.state == "unknown" and "SERVFAIL" in health.reason, health
