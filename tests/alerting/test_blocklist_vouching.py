"""A list's answer about a name is believed only with the same round's RFC 5782 test entries
(issue 65's "every oracle is checked before it is believed"), against ground truth on loopback
DNS servers: the test entries are asked once per interval (a fresh answer is skipped), so a list
that dies between two of their asks must not list a new monitor's address (it lists
everything), nor clear a genuine listing (it says nothing), on its word. Each history runs in a
seeded order of its monitors' rounds; the figures are printed."""

import random
from datetime import datetime, timedelta

import asyncpg
import msgspec
import pytest

from agent.sidechecks.blocklists import BlocklistProbe
from controller.ingest.store import decode_result
from controller.monitors import store as monitors
from controller.monitors.kinds import ALL_TYPES
from controller.sidechecks.blocklists import store as db
from controller.sidechecks.blocklists.rules import BlockList, Fresh, ask
from controller.sidechecks.blocklists.view import monitor_standing
from controller.sidechecks.blocklists.watch import BlocklistWatch
from shared.clock import WALL
from shared.messages import CheckResult
from shared.timefmt import iso_ms, utcnow
from testkit.peers.dnsbl import DnsblPeer, Zone, healthy, label
from tests.alerting.conftest import LINKS, Rig
from tests.alerting.test_blocklists import arrived

HOST = "smtp.vouch.test"
# The test's own list: no other test's answers about its test entries in the shared database.
VOUCH = BlockList("vouch.example.net", "ip", "Vouch RBL", major=True)
LISTS = (VOUCH,)
EVERY = timedelta(hours=6)
SEEDS = (1, 2)
# One country per history: a list's health there is its newest test answers', every test's.
DEAD_IN = dict(zip(SEEDS, ("NL", "BE"), strict=True))
MUTE_IN = dict(zip(SEEDS, ("CH", "PL"), strict=True))


def dead() -> Zone:
    """A list that lists everything (its never-listed test entry too)."""
    return Zone(everything=["127.0.0.2"])


def mute() -> Zone:
    """A list that says nothing (its always-listed test entry not listed)."""
    return Zone()


async def round_of(
    rig: Rig, monitor: asyncpg.Record, ip: str, zone: Zone, at: datetime, cc: str
) -> list[str]:
    """One round of `monitor` in `cc` (its host at `ip`) against a resolver serving `zone` as the
    list, asking what the planner would (fresh names skipped); the result stored as the ingester
    stores it. The names the list was asked about."""
    async with rig.pool.acquire() as conn:
        fresh = await db.fresh(conn, at - EVERY, LISTS)
    async with DnsblPeer({VOUCH.zone: zone}, records={(HOST, "A"): [ip]}) as de:
        seen = await BlocklistProbe(resolver=de.address, clock=WALL).probe(
            ask(LISTS, None, fresh.get(cc, Fresh())), HOST, 5
        )
        asked = [n for n, _ in de.asked if n.endswith(VOUCH.zone)]
    result = CheckResult(
        job_id=f"job-{monitor['public_id']}-{at.timestamp()}",
        monitor_id=str(monitor["public_id"]),
        monitor_type="smtp",
        country=cc,
        agent_id=f"{cc}-agent",
        scheduled_at=iso_ms(at),
        started_at=iso_ms(at),
        finished_at=iso_ms(at),
        status="up",
        side_checks={"blocklists": seen},
    )
    decoded = decode_result(msgspec.json.encode(result))
    async with rig.pool.acquire() as conn, conn.transaction():
        await db.record(conn, [arrived(decoded)])
    return asked


async def cell_of(rig: Rig, monitor: asyncpg.Record, ip: str, at: datetime) -> str:
    """The address's one cell (one list, the history's one country) on the monitor's page."""
    async with rig.pool.acquire() as conn:
        m = await monitors.get(conn, monitor["id"], ALL_TYPES, None)
        assert m is not None
        standing = await monitor_standing(conn, m, LISTS, int(EVERY.total_seconds()), at)
    (entry,) = [n for n in standing.names if n.name == ip]
    (on,) = entry.lists
    (cell,) = on.cells
    return cell.state


async def listings(rig: Rig, monitor: asyncpg.Record) -> list[asyncpg.Record]:
    return await rig.fetch(
        "SELECT name, raised_at, cleared_at FROM blocklist_listings WHERE monitor_id = $1",
        monitor["id"],
    )


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_list_dead_since_its_test_entries_were_asked_lists_nobody(
    rig: Rig, seed: int
) -> None:
    """Truth: no address is listed. The list is healthy when the first monitor's round asks its
    test entries, then lists everything; the other monitors' first rounds (seeded order) find
    the test entries fresh. None of their addresses may be listed, nor shown listed."""
    rng, cc = random.Random(seed), DEAD_IN[seed]
    ips = [f"93.184.217.{10 * seed + n}" for n in range(4)]
    t0 = (utcnow() - timedelta(hours=3)).replace(microsecond=0)
    first, *others = [await rig.monitor([cc]) for _ in ips]
    await round_of(rig, first, ips[0], healthy(), t0, cc)
    order = list(zip(others, ips[1:], strict=True))
    rng.shuffle(order)
    watch = BlocklistWatch(
        rig.pool, LISTS, interval_s=int(EVERY.total_seconds()), hold_s=0, clock=WALL
    )
    shown: dict[str, str] = {}
    for n, (monitor, ip) in enumerate(order, start=1):
        at = t0 + timedelta(minutes=10 * n)
        await round_of(rig, monitor, ip, dead(), at, cc)
        await watch.run_once(at)
        shown[ip] = await cell_of(rig, monitor, ip, at)
    raised = [r["name"] for m, _ in order for r in await listings(rig, m) if r["raised_at"]]
    print(f"seed {seed}: order {[ip for _, ip in order]}, shown {shown}, raised {raised}")
    assert raised == []
    assert "listed" not in shown.values(), shown


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_list_mute_since_its_test_entries_were_asked_clears_no_listing(
    rig: Rig, seed: int
) -> None:
    """Truth: the watched address stays listed. Its listing is raised from a healthy round; a
    later round asks the test entries (healthy); then the list says nothing, and the watched
    monitor's next round (its answer no longer fresh, the test entries still fresh) gets
    NXDOMAIN. The listing stays raised and the address is never shown `not_listed`."""
    rng, cc = random.Random(seed), MUTE_IN[seed]
    listed_ip = f"93.184.218.{10 * seed}"
    other_ips = [f"93.184.218.{10 * seed + n}" for n in range(1, 4)]
    t0 = (utcnow() - timedelta(hours=9)).replace(microsecond=0)
    watched = await rig.monitor([cc])
    watch = BlocklistWatch(
        rig.pool, LISTS, interval_s=int(EVERY.total_seconds()), hold_s=0, links=LINKS, clock=WALL
    )
    listing = healthy(**{label(listed_ip): ["127.0.0.2"]})
    await round_of(rig, watched, listed_ip, listing, t0, cc)
    await watch.run_once(t0)
    assert [r["raised_at"] for r in await listings(rig, watched)] == [t0]
    # Past the interval: another monitor's round asks the test entries again (healthy).
    t1 = t0 + EVERY + timedelta(minutes=1)
    helper = await rig.monitor([cc])
    await round_of(rig, helper, other_ips[0], listing, t1, cc)
    # Then the list goes mute; the watched monitor's round and others', in a seeded order.
    rounds: list[tuple[asyncpg.Record, str]] = [(watched, listed_ip)]
    rounds += [(await rig.monitor([cc]), ip) for ip in other_ips[1:]]
    rng.shuffle(rounds)
    for n, (monitor, ip) in enumerate(rounds, start=1):
        at = t1 + timedelta(minutes=n)
        await round_of(rig, monitor, ip, mute(), at, cc)
        await watch.run_once(at)
    state = await cell_of(rig, watched, listed_ip, t1 + timedelta(minutes=10))
    rows = await listings(rig, watched)
    told = [n["subject"] for n in await rig.outbox_rows(watched)]
    print(f"seed {seed}: order {[ip for _, ip in rounds]}, cell {state}, told {told}")
    assert [(r["raised_at"], r["cleared_at"]) for r in rows] == [(t0, None)]
    assert state != "not_listed"
    assert not any("No longer" in s for s in told), told
