"""One list that never answers, on real parts: the agent's lookups against a loopback DNS server
standing for a country's view of the lists (one healthy list, one whose servers never reply),
stored as the ingester stores them, then the scheduler's view of them (`FreshNames`) planning
the next rounds. The healthy list's names are fresh whatever the dead list does (it is not asked
about them again within the interval); the dead list is not asked again until its failure is
older than the interval; and a round with the dead list costs a lookup's time, not the round's
whole budget."""

import time
from datetime import timedelta

import msgspec

from agent.blocklist_tests import TIMEOUT_S
from agent.sidechecks.blocklists import BlocklistProbe
from controller.ingest.store import decode_result
from controller.sidechecks.blocklists import store as db
from controller.sidechecks.blocklists.rules import BlockList, Fresh, ask
from controller.sidechecks.blocklists.watch import FreshNames
from shared.clock import WALL
from shared.messages import CheckResult
from shared.sidechecks.blocklists import Reputation
from shared.timefmt import iso_ms, utcnow
from testkit.peers.dnsbl import DnsblPeer, healthy
from tests.alerting.conftest import Rig
from tests.alerting.test_blocklists import HOST, IPS, arrived

LIVE = BlockList("live.example.net", "ip", "Live RBL")
NEVER = BlockList("never.example.net", "ip", "Never answers")
LISTS = (LIVE, NEVER)
EVERY = timedelta(hours=6)


async def _round(
    rig: Rig, peer: DnsblPeer, public_id: str, at: object, asked: Fresh, ip: str
) -> tuple[Reputation, float]:
    """One round in DE asking what the planner would, stored as the ingester stores it; the
    lookups and how long they took."""
    started = time.monotonic()
    listed = {"ips": [ip], "domains": []}
    facts = await BlocklistProbe(resolver=peer.address, clock=WALL).probe(
        ask(LISTS, None, asked, listed), HOST, 10.0
    )
    took = time.monotonic() - started
    sent = CheckResult(
        job_id=f"job-DE-{time.monotonic_ns()}",
        monitor_id=public_id,
        monitor_type="smtp",
        country="DE",
        agent_id="DE-agent",
        scheduled_at=iso_ms(at),  # type: ignore[arg-type]
        started_at=iso_ms(at),  # type: ignore[arg-type]
        finished_at=iso_ms(at),  # type: ignore[arg-type]
        status="up",
        side_checks={"blocklists": facts},
    )
    async with rig.pool.acquire() as conn, conn.transaction():
        await db.record(conn, [arrived(decode_result(msgspec.json.encode(sent)))])
    return facts, took


async def test_one_dead_list_neither_unfreshens_the_others_nor_is_asked_every_round(
    rig: Rig,
) -> None:
    ip = next(IPS)
    monitor = await rig.monitor(["DE"])
    public_id = str(monitor["public_id"])
    t0 = (utcnow() - timedelta(minutes=30)).replace(microsecond=0)
    zones = {LIVE.zone: healthy(), NEVER.zone: healthy()}
    # The dead list's answers come after every lookup gave up on them.
    async with DnsblPeer(zones, records={(HOST, "A"): [ip]}, slow={NEVER.zone: 60.0}) as de:
        first, took = await _round(rig, de, public_id, t0, Fresh(), ip)
        assert {a.zone for a in first.answers if a.a is not None} == {LIVE.zone}
        assert {a.error for a in first.answers if a.zone == NEVER.zone} == {"timed out"}
        # The dead list cost a lookup's time, not the round's budget of 10 s.
        assert took < TIMEOUT_S + 1.5, took
        view = FreshNames(rig.pool, LISTS, int(EVERY.total_seconds()), clock=WALL)
        await view.refresh(t0 + timedelta(minutes=1))
        fresh = view.fresh("DE")
        assert ip in fresh.on[LIVE.zone] and fresh.dead == {NEVER.zone}
        before = len(de.asked)
        for n in range(1, 4):  # the next rounds of the interval: nothing is asked again
            later, took = await _round(rig, de, public_id, t0 + timedelta(minutes=n), fresh, ip)
            assert later.answers == [] and took < 1.0
        assert [q for q, _ in de.asked[before:] if q.endswith(".example.net")] == []
        # Once the failure is older than the interval, the dead list is asked again (once).
        await view.refresh(t0 + EVERY + timedelta(minutes=1))
        assert view.fresh("DE").dead == frozenset()


async def test_an_agent_asks_no_list_again_within_the_controllers_refresh() -> None:
    """Until the controller's view of the answers catches up (a refresh, `FreshNames`), the
    rounds it plans skip nothing: the agent itself does not ask a list about a name it answered
    in the last minute, nor a list that has just timed out, so a popular name and a dead list
    are asked once, not once per round."""
    ip = next(IPS)
    zones = {LIVE.zone: healthy(), NEVER.zone: healthy()}
    async with DnsblPeer(zones, records={(HOST, "A"): [ip]}, slow={NEVER.zone: 60.0}) as de:
        probe = BlocklistProbe(resolver=de.address, clock=WALL)
        listed = {"ips": [ip], "domains": []}
        first = await probe.probe(ask(LISTS, None, Fresh(), listed), HOST, 10.0)
        assert {a.zone for a in first.answers if a.name == ip} == {LIVE.zone, NEVER.zone}
        before = len(de.asked)
        started = time.monotonic()
        again = await probe.probe(ask(LISTS, None, Fresh(), listed), HOST, 10.0)
        assert time.monotonic() - started < 1.0
    assert [a for a in again.answers if a.name == ip] == []
    assert [q for q, _ in de.asked[before:] if q.endswith(".example.net")] == []
