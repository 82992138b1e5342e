"""Blocklist findings end to end on real parts: the agent's lookups against loopback DNS servers
standing for two countries' views of the lists, stored as the ingester stores them (answers
shared per list, name and country), moved by the watch with its hold time into `blocklisted`
listings, events and notices; unhealthy lists never make one; a name another monitor had
answered in the interval is skipped."""

from datetime import timedelta
from typing import Any

import asyncpg
import msgspec

from agent.sidechecks.blocklists import BlocklistProbe
from controller.ingest.store import CheckedResult, decode_result
from controller.settings import ControllerSettings
from controller.sidechecks.blocklists import store as db
from controller.sidechecks.blocklists.rules import KNOWN, BlockList, Fresh, ask
from controller.sidechecks.blocklists.watch import BlocklistWatch, FreshNames
from controller.sidechecks.frame import Arrived
from controller.web.app import create_app
from controller.web.console.posture_view import listing_counts
from shared.clock import WALL
from shared.messages import CheckResult, decode_event
from shared.sidechecks.blocklists import WIRE, Reputation
from shared.timefmt import iso_ms, utcnow
from testkit.peers.dnsbl import DnsblPeer, Zone, healthy, label
from testkit.serving import http_client, serve_app
from tests.alerting.conftest import LINKS, Rig
from tests.conftest import make_tenant

HOST = "smtp.customer.test"
# Query names only: nothing is ever sent to them. Each test its own, as answers are shared by
# every monitor that depends on an address (and the tests share a database).
IPS = iter(f"93.184.216.{n}" for n in range(30, 60))
RBL = BlockList("rbl.example.net", "ip", "Example RBL", major=True, delist="https://x/{name}")
DEAD = BlockList("dead.example.net", "ip", "Dead list")
ZEN = KNOWN["zen.spamhaus.org"]
LISTS = (RBL, DEAD, ZEN)
HOLD = timedelta(hours=1)


def views(ip: str, listed_in_rbl: bool) -> dict[str, Zone]:
    """One country's view: RBL lists the host or not; the dead list lists everything; ZEN
    answers "public resolver" to everything (as Spamhaus does through one)."""
    rbl = healthy(**{label(ip): ["127.0.0.2"]}) if listed_in_rbl else healthy()
    return {
        "rbl.example.net": rbl,
        "dead.example.net": Zone(everything=["127.0.0.2"]),
        "zen.spamhaus.org": Zone(everything=["127.255.255.254"]),
    }


def arrived(r: CheckedResult) -> Arrived[Reputation]:
    """A decoded result's blocklist facts as the ingester hands them to the side check's store."""
    facts = WIRE.facts_of(r.side_checks)
    assert facts is not None
    return Arrived(r.job_id, r.monitor_id, r.country, r.scheduled_at, r.finished_at, facts)


async def lookups(
    rig: Rig,
    monitor: asyncpg.Record,
    peers: dict[str, DnsblPeer],
    at: Any,
    every: timedelta = timedelta(hours=6),
    listed: dict[str, list[str]] | None = None,
    lists: tuple[BlockList, ...] = LISTS,
) -> list[CheckResult]:
    """Each country's agent asks its resolver (about the host and the `listed` outbound
    names) of `lists`; the results stored as the ingester does."""
    out = []
    for cc, peer in peers.items():
        async with rig.pool.acquire() as conn:
            fresh = await db.fresh(conn, at - every, lists)
        probe = BlocklistProbe(resolver=peer.address, clock=WALL)
        reputation = await probe.probe(ask(lists, None, fresh.get(cc, Fresh()), listed), HOST, 5)
        out.append(
            CheckResult(
                job_id=f"job-{cc}-{at.timestamp()}",
                monitor_id=str(monitor["public_id"]),
                monitor_type="smtp",
                country=cc,
                agent_id=f"{cc}-agent",
                scheduled_at=iso_ms(at),
                started_at=iso_ms(at),
                finished_at=iso_ms(at),
                status="up",
                side_checks={"blocklists": reputation},
            )
        )
    # Decoded as the ingester decodes them from the stream (times and monitor id typed).
    decoded = [decode_result(msgspec.json.encode(r)) for r in out]
    async with rig.pool.acquire() as conn, conn.transaction():
        await db.record(conn, [arrived(r) for r in decoded])
    return out


async def test_a_listing_held_is_raised_told_once_and_cleared(rig: Rig) -> None:
    IP = next(IPS)
    monitor = await rig.monitor(["DE", "US"])
    pid = monitor["public_id"]
    watch = BlocklistWatch(
        rig.pool, LISTS, interval_s=6 * 3600, hold_s=3600, links=LINKS, clock=WALL
    )
    t0 = utcnow() - timedelta(hours=8)
    async with (
        DnsblPeer(views(IP, listed_in_rbl=True), records={(HOST, "A"): [IP]}) as de,
        DnsblPeer(views(IP, listed_in_rbl=False), records={(HOST, "A"): [IP]}) as us,
    ):
        await lookups(rig, monitor, {"DE": de, "US": us}, t0)
        await watch.run_once(t0)
        rows = await rig.fetch(
            "SELECT * FROM blocklist_listings WHERE monitor_id = $1", monitor["id"]
        )
        # Held, not told yet; only the healthy list: the dead list and ZEN's errors list nobody.
        assert [(r["zone"], r["name"], r["countries"], r["raised_at"]) for r in rows] == [
            ("rbl.example.net", IP, ["DE"], None)
        ]
        assert await rig.outbox_rows(monitor) == []
        await watch.run_once(t0 + HOLD)
        (row,) = await rig.fetch(
            "SELECT * FROM blocklist_listings WHERE monitor_id = $1", monitor["id"]
        )
        assert row["raised_at"] == t0 + HOLD and row["since"] == t0
        notes = await rig.outbox_rows(monitor)
        assert {n["channel"] for n in notes} == {"email"}  # critical: e-mail by default
        (mail,) = notes
        assert mail["kind"] == "finding" and "Blocklisted on Example RBL" in mail["subject"]
        assert f"https://x/{IP}" in mail["body_text"] and "DE" in mail["body_text"]
        await watch.run_once(t0 + HOLD + timedelta(minutes=1))  # nothing new: nothing told
        assert len(await rig.outbox_rows(monitor)) == 1
        queued = await rig.fetch(  # published after the commit, as every event is
            "SELECT payload FROM event_outbox WHERE subject = $1", f"mon.events.{pid}"
        )
        events = [decode_event(bytes(r["payload"])) for r in queued]
        assert [(e.posture.change, e.posture.code) for e in events if e.posture] == [
            ("appeared", "blocklisted")
        ]
    async with (
        DnsblPeer(views(IP, listed_in_rbl=False), records={(HOST, "A"): [IP]}) as de,
        DnsblPeer(views(IP, listed_in_rbl=False), records={(HOST, "A"): [IP]}) as us,
    ):
        later = t0 + timedelta(hours=7)  # the 6 h interval is over: the lists are asked again
        await lookups(rig, monitor, {"DE": de, "US": us}, later)
        await watch.run_once(later)
    (row,) = await rig.fetch(
        "SELECT * FROM blocklist_listings WHERE monitor_id = $1", monitor["id"]
    )
    assert row["cleared_at"] == later
    subjects = [n["subject"] for n in await rig.outbox_rows(monitor)]
    assert len(subjects) == 2 and "No longer on Example RBL" in subjects[1]


async def test_a_listing_shorter_than_the_hold_is_never_told(rig: Rig) -> None:
    IP = next(IPS)
    monitor = await rig.monitor(["DE"])
    watch = BlocklistWatch(rig.pool, LISTS, interval_s=600, hold_s=3600, clock=WALL)
    t0 = utcnow() - timedelta(hours=2)
    async with DnsblPeer(views(IP, listed_in_rbl=True), records={(HOST, "A"): [IP]}) as de:
        await lookups(rig, monitor, {"DE": de}, t0, timedelta(minutes=10))
        await watch.run_once(t0)
    async with DnsblPeer(views(IP, listed_in_rbl=False), records={(HOST, "A"): [IP]}) as de:
        await lookups(rig, monitor, {"DE": de}, t0 + timedelta(minutes=11), timedelta(minutes=10))
        await watch.run_once(t0 + timedelta(minutes=11))
    assert await rig.outbox_rows(monitor) == []
    rows = await rig.fetch("SELECT * FROM blocklist_listings WHERE monitor_id = $1", monitor["id"])
    assert [r["cleared_at"] is not None for r in rows] == [True]


async def test_an_address_answered_for_one_monitor_is_not_asked_again_for_another(
    rig: Rig,
) -> None:
    """The first monitor's host address is the second's listed outbound address: the second's
    round finds it fresh and asks no list about it (nor about the lists' test entries)."""
    IP = next(IPS)
    first, second = await rig.monitor(["DE"]), await rig.monitor(["DE"])
    t0 = utcnow() - timedelta(minutes=30)
    async with DnsblPeer(views(IP, listed_in_rbl=True), records={(HOST, "A"): [IP]}) as de:
        await lookups(rig, first, {"DE": de}, t0)
        asked = len(de.asked)
        view = FreshNames(rig.pool, LISTS, 6 * 3600, clock=WALL)
        await view.refresh(t0 + timedelta(minutes=1))
        assert IP in view.fresh("DE").on[RBL.zone] and "127.0.0.2" in view.fresh("DE").on[RBL.zone]
        assert IP in view.known(first["id"], "DE") and not view.known(second["id"], "DE")
        listed = {"ips": [IP], "domains": []}
        (result,) = await lookups(rig, second, {"DE": de}, t0 + timedelta(minutes=1), listed=listed)
        # The second monitor's round resolved the host only: no list was asked again.
        assert de.asked[asked:] == [(HOST.lower(), "A"), (HOST.lower(), "AAAA")]
    seen = WIRE.facts_of(result.side_checks)
    assert seen is not None and seen.answers == []
    assert seen.names[IP] == "listed"
    watch = BlocklistWatch(rig.pool, LISTS, interval_s=6 * 3600, hold_s=0, clock=WALL)
    await watch.run_once(t0 + timedelta(minutes=2))
    raised = await rig.fetch(
        "SELECT monitor_id FROM blocklist_listings WHERE raised_at IS NOT NULL"
        " AND monitor_id = ANY($1::bigint[]) ORDER BY monitor_id",
        [first["id"], second["id"]],
    )
    assert [r["monitor_id"] for r in raised] == sorted([first["id"], second["id"]])
    msgspec.json.encode(result)


async def test_the_api_shows_each_lists_health_per_country(
    rig: Rig, settings: ControllerSettings
) -> None:
    """`GET /api/blocklists` with BLOCKLISTS set: every list, its severity, delisting page and
    test entries, and its health in each country that asked it (a dead list and a list that
    answers Spamhaus's error codes unhealthy, with the reason)."""
    monitor = await rig.monitor(["DE"])
    IP = next(IPS)
    async with DnsblPeer(views(IP, listed_in_rbl=False), records={(HOST, "A"): [IP]}) as de:
        await lookups(rig, monitor, {"DE": de}, utcnow())
    custom = settings.replace(
        blocklists="zen.spamhaus.org, rbl.example.net:ip:major, dead.example.net:ip"
    )
    async with (
        serve_app(create_app(custom, rig.pool)) as url,
        http_client(base_url=url, timeout=10) as api,
    ):
        response = await api.get("/api/blocklists", headers=rig.tenant.auth("readonly"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enabled"] is True and body["holdSeconds"] == 3600
    by_zone = {b["zone"]: b for b in body["lists"]}
    assert list(by_zone) == ["zen.spamhaus.org", "rbl.example.net", "dead.example.net"]
    health = {
        zone: next(c for c in b["countries"] if c["country"] == "DE") for zone, b in by_zone.items()
    }
    assert health["rbl.example.net"]["state"] == "healthy"
    # to the hour only: the round that asked the test entries is some organization's
    assert health["rbl.example.net"]["checkedAt"].endswith(":00:00.000Z")
    assert health["dead.example.net"]["state"] == "unhealthy"
    assert "lists everything" in health["dead.example.net"]["reason"]
    assert health["zen.spamhaus.org"]["state"] == "unhealthy"
    assert "public or open resolver" in health["zen.spamhaus.org"]["reason"]
    assert by_zone["rbl.example.net"]["severity"] == "critical"
    assert by_zone["zen.spamhaus.org"]["testEntries"] == ["127.0.0.2", "127.0.0.1"]


async def test_a_monitors_listings_per_name_list_and_country_through_the_api(
    rig: Rig, settings: ControllerSettings
) -> None:
    """`GET …/blocklists`: the host's address and the outbound address the monitor lists, each
    on every IP list per country: listed from DE (since its listing opened, the delisting page
    for that address, raised once held), not listed from US, the dead list and ZEN (through a
    public resolver) `list_unhealthy`; its listing in the history. Another organization's
    monitor is a 404."""
    host_ip, outbound = next(IPS), next(IPS)
    monitor = await rig.monitor(["DE", "US"])
    listed = {"ips": [outbound], "domains": []}
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET reputation = $2 WHERE id = $1", monitor["id"], listed
        )
    watch = BlocklistWatch(rig.pool, LISTS, interval_s=6 * 3600, hold_s=3600, clock=WALL)
    t0 = utcnow() - timedelta(hours=2)
    records = {(HOST, "A"): [host_ip]}
    async with (
        DnsblPeer(views(outbound, listed_in_rbl=True), records=records) as de,
        DnsblPeer(views(outbound, listed_in_rbl=False), records=records) as us,
    ):
        await lookups(rig, monitor, {"DE": de, "US": us}, t0, listed=listed)
    await watch.run_once(t0)
    await watch.run_once(t0 + HOLD)
    custom = settings.replace(
        blocklists="zen.spamhaus.org, rbl.example.net:ip:major, dead.example.net:ip"
    )
    url = f"/api/smtp-monitors/{monitor['public_id']}/blocklists"
    async with (
        serve_app(create_app(custom, rig.pool)) as base,
        http_client(base_url=base, timeout=10) as api,
    ):
        response = await api.get(url, headers=rig.tenant.auth("readonly"))
        other = await make_tenant(rig.pool)
        assert (await api.get(url, headers=other.auth())).status_code == 404
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enabled"] is True and body["monitorId"] == str(monitor["public_id"])
    names = {n["name"]: n for n in body["names"]}
    assert set(names) == {host_ip, outbound}  # never the lists' test entries
    assert names[host_ip]["sources"] == ["host"] and names[outbound]["sources"] == ["listed"]
    assert names[outbound]["countries"] == ["DE", "US"] and names[outbound]["kind"] == "ip"
    on = {entry["zone"]: entry for entry in names[outbound]["lists"]}
    assert list(on) == ["zen.spamhaus.org", "rbl.example.net", "dead.example.net"]
    rbl = on["rbl.example.net"]
    # The operator's own zone has no known delisting page; Spamhaus's has.
    assert rbl["raised"] is True and rbl["delisting"] == ""
    assert on["zen.spamhaus.org"]["delisting"] == "https://check.spamhaus.org/"
    assert rbl["severity"] == "critical"
    cells = {c["country"]: c for c in rbl["countries"]}
    assert cells["DE"]["state"] == "listed" and cells["DE"]["since"] == iso_ms(t0)
    assert cells["DE"]["checkedAt"] == iso_ms(t0)
    assert cells["US"]["state"] == "not_listed" and cells["US"]["since"] is None
    for zone, why in (("dead.example.net", "lists everything"), ("zen.spamhaus.org", "public")):
        for cell in on[zone]["countries"]:
            assert cell["state"] == "list_unhealthy" and why in cell["reason"], cell
    host_rbl = next(e for e in names[host_ip]["lists"] if e["zone"] == "rbl.example.net")
    assert {c["state"] for c in host_rbl["countries"]} == {"not_listed"}
    (listing,) = body["listings"]
    assert (listing["name"], listing["zone"], listing["countries"]) == (
        outbound,
        "rbl.example.net",
        ["DE"],
    )
    assert listing["raisedAt"] == iso_ms(t0 + HOLD) and listing["clearedAt"] is None
    assert listing["label"] == "rbl.example.net" and listing["severity"] == "critical"


async def test_a_raised_listing_seen_from_another_country_is_one_notice_and_a_repeat_none(
    rig: Rig,
) -> None:
    """Raised from DE; then US sees it too: one notice ("now seen from DE and US") and one
    `changed` event, none for the next pass; US's list unhealthy for a round changes nothing
    (US keeps its place); US sees it clean while DE still sees it: one notice ("no longer from
    US"), the listing still open."""
    IP = next(IPS)
    monitor = await rig.monitor(["DE", "US"])
    pid = monitor["public_id"]
    watch = BlocklistWatch(
        rig.pool, LISTS, interval_s=6 * 3600, hold_s=3600, links=LINKS, clock=WALL
    )
    step = timedelta(minutes=10)  # each round's answers newer than the last (fresh for 5 min)
    # The lists' test entries are answered for every monitor: this test's are the newest.
    t0 = utcnow() - HOLD - 4 * step
    records = {(HOST, "A"): [IP]}

    async def round_at(at: Any, us: Zone) -> None:
        async with (
            DnsblPeer(views(IP, listed_in_rbl=True), records=records) as de,
            DnsblPeer(
                {**views(IP, listed_in_rbl=False), "rbl.example.net": us}, records=records
            ) as us_peer,
        ):
            await lookups(rig, monitor, {"DE": de, "US": us_peer}, at, timedelta(minutes=5))
        await watch.run_once(at)

    async def told() -> list[str]:
        return [n["subject"] for n in await rig.outbox_rows(monitor)]

    await round_at(t0, healthy())
    await watch.run_once(t0 + HOLD)
    assert await told() == ["[mailprobe] Blocklisted on Example RBL: Outbound relay"]

    listed_in_us = healthy(**{label(IP): ["127.0.0.2"]})
    t1 = t0 + HOLD + step
    await round_at(t1, listed_in_us)
    (moved,) = (await rig.outbox_rows(monitor))[1:]
    assert moved["subject"] == "[mailprobe] On Example RBL, now seen from DE and US: Outbound relay"
    assert (
        f"{IP}, listed on Example RBL, is now seen listed from DE and US (newly from US)."
        in moved["body_text"]
    )
    assert moved["kind"] == "finding" and moved["channel"] == "email"
    await watch.run_once(t1 + timedelta(minutes=1))  # the same countries: nothing told
    assert len(await told()) == 2

    t2 = t1 + step
    await round_at(t2, Zone())  # US's list says nothing (no test entry): US judges nothing
    assert len(await told()) == 2
    (row,) = await rig.fetch(
        "SELECT countries FROM blocklist_listings WHERE monitor_id = $1", monitor["id"]
    )
    assert row["countries"] == ["DE", "US"]

    t3 = t2 + step
    await round_at(t3, healthy())
    subjects = await told()
    assert subjects[2:] == ["[mailprobe] On Example RBL, now seen from DE: Outbound relay"]
    body = (await rig.outbox_rows(monitor))[2]["body_text"]
    assert "is now seen listed from DE; no longer from US." in body
    await watch.run_once(t3 + timedelta(minutes=1))
    assert len(await told()) == 3
    (row,) = await rig.fetch(
        "SELECT countries, cleared_at FROM blocklist_listings WHERE monitor_id = $1",
        monitor["id"],
    )
    assert (row["countries"], row["cleared_at"]) == (["DE"], None)
    queued = await rig.fetch(
        "SELECT payload FROM event_outbox WHERE subject = $1 ORDER BY id", f"mon.events.{pid}"
    )
    events = [decode_event(bytes(r["payload"])) for r in queued]
    notes = [e.posture for e in events if e.posture]
    assert [(n.change, n.code, n.severity) for n in notes] == [
        ("appeared", "blocklisted", "critical"),
        ("changed", "blocklisted", "critical"),
        ("changed", "blocklisted", "critical"),
    ]
    assert "seen from DE, US:" in notes[1].detail and "seen from DE:" in notes[2].detail


async def test_a_listing_two_monitors_share_is_told_once_and_counted_once(rig: Rig) -> None:
    """Two monitors of one customer depend on one listed address (issue 80): the listing is
    shown on both, raised and cleared with one notice each, counted once."""
    IP = next(IPS)
    first, second = await rig.monitor(["DE"]), await rig.monitor(["DE"])
    watch = BlocklistWatch(rig.pool, LISTS, interval_s=6 * 3600, hold_s=0, links=LINKS, clock=WALL)
    t0 = utcnow() - timedelta(hours=8)
    async with DnsblPeer(views(IP, listed_in_rbl=True), records={(HOST, "A"): [IP]}) as de:
        await lookups(rig, first, {"DE": de}, t0)
        await lookups(rig, second, {"DE": de}, t0)
        await watch.run_once(t0)
    raised = await rig.fetch(
        "SELECT monitor_id FROM blocklist_listings WHERE raised_at IS NOT NULL"
        " AND cleared_at IS NULL AND monitor_id = ANY($1::bigint[])",
        [first["id"], second["id"]],
    )
    assert len(raised) == 2
    mails = [*await rig.outbox_rows(first), *await rig.outbox_rows(second)]
    assert [m["channel"] for m in mails] == ["email"], [m["subject"] for m in mails]
    async with rig.pool.acquire() as conn:
        counted = await listing_counts(conn, rig.tenant.org_id, LISTS, 100)
    assert counted == {"critical": 1}
    later = t0 + timedelta(hours=7)
    async with DnsblPeer(views(IP, listed_in_rbl=False), records={(HOST, "A"): [IP]}) as de:
        await lookups(rig, first, {"DE": de}, later)
        await lookups(rig, second, {"DE": de}, later)
        await watch.run_once(later)
    mails = [*await rig.outbox_rows(first), *await rig.outbox_rows(second)]
    subjects = [m["subject"] for m in mails]
    assert len(subjects) == 2 and "No longer on Example RBL" in subjects[-1], subjects


async def test_a_shared_listing_raised_reaches_every_holders_recipients_once(rig: Rig) -> None:
    """A listing three monitors of one customer hold, with two on-call addresses between them:
    its raise is one notice to each address, whichever monitor raised it first."""
    IP = next(IPS)
    ms = [
        await rig.monitor(["DE"], email="relay-team@customer.test"),
        await rig.monitor(["DE"], email="web-team@customer.test"),
        await rig.monitor(["DE"], email="relay-team@customer.test"),
    ]
    watch = BlocklistWatch(rig.pool, LISTS, interval_s=6 * 3600, hold_s=0, links=LINKS, clock=WALL)
    t0 = utcnow() - timedelta(hours=8)
    async with DnsblPeer(views(IP, listed_in_rbl=True), records={(HOST, "A"): [IP]}) as de:
        for m in ms:
            await lookups(rig, m, {"DE": de}, t0)
        await watch.run_once(t0)
    mails = [r for m in ms for r in await rig.outbox_rows(m) if r["channel"] == "email"]
    assert sorted(r["target"] for r in mails) == [
        "relay-team@customer.test",
        "web-team@customer.test",
    ], [(r["target"], r["subject"]) for r in mails]
    assert all("Blocklisted on Example RBL" in r["subject"] for r in mails)


async def test_a_shared_listing_cleared_reaches_every_holders_recipients_once(rig: Rig) -> None:
    """Two monitors of one customer hold one listing, seen from different countries, with an
    on-call address each: the one seen from France stops holding it first (no news while the
    other holds it); when the last holder clears it, both addresses hear it is gone, once.

    A list's health in a country is every organization's fact (its test entries' answers and
    failures), and other tests record the shared lists' failures on their own backdated
    timelines in this database: this test asks a list of its own, so only its rounds judge it."""
    IP = next(IPS)
    own = BlockList("own-shared.example.net", "ip", "Own RBL", major=True)
    lists = (own,)
    de_m = await rig.monitor(["DE"], email="relay-team@customer.test")
    fr_m = await rig.monitor(["FR"], email="web-team@customer.test")
    watch = BlocklistWatch(rig.pool, lists, interval_s=6 * 3600, hold_s=0, links=LINKS, clock=WALL)
    t0 = utcnow() - timedelta(hours=20)
    t1, t2 = t0 + timedelta(hours=7), t0 + timedelta(hours=14)

    def view(listed: bool) -> dict[str, Zone]:
        return {own.zone: healthy(**{label(IP): ["127.0.0.2"]}) if listed else healthy()}

    async def step(at: Any, de_listed: bool, fr_listed: bool) -> None:
        records = {(HOST, "A"): [IP]}
        async with (
            DnsblPeer(view(de_listed), records=records) as de,
            DnsblPeer(view(fr_listed), records=records) as fr,
        ):
            await lookups(rig, de_m, {"DE": de}, at, lists=lists)
            await lookups(rig, fr_m, {"FR": fr}, at, lists=lists)
            await watch.run_once(at)

    async def told(subject: str) -> list[str]:
        rows = [r for m in (de_m, fr_m) for r in await rig.outbox_rows(m)]
        return sorted(
            r["target"] for r in rows if r["channel"] == "email" and subject in r["subject"]
        )

    both = ["relay-team@customer.test", "web-team@customer.test"]
    await step(t0, True, True)
    assert await told("Blocklisted on Own RBL") == both
    await step(t1, True, False)
    assert await told("No longer on Own RBL") == [], "another holder still holds it"
    await step(t2, False, False)
    assert await told("No longer on Own RBL") == both
    await watch.run_once(t2 + timedelta(minutes=1))
    assert await told("No longer on Own RBL") == both
