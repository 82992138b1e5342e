"""The same server's other monitors confirmed with a failing or recovering one (issue 80), the
alerter's side on real PostgreSQL: which monitors are asked (one customer's, the same host name,
any port; not disabled, not already failing, once per run), within the organization's allowance,
and the flow incident's first notice held while one of them is still being checked and sent as
soon as none is, before the group wait is over."""

import dataclasses
import re
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec

from agent.probers.run import run_check
from agent.probers.tls import build_ssl_contexts
from agent.resolver import TargetResolver
from controller.access import customers_store as customers
from controller.ingest import store as results
from controller.scheduling import confirm, confirm_store
from shared.clock import WALL
from shared.messages import CheckResult
from shared.timefmt import iso_ms, utcnow
from testkit.alerting.wired import wired_alerter
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer
from tests.alerting.conftest import DOWN, LINKS, UP, Rig
from tests.conftest import make_tenant

HOST = "mail.customer.test"


async def requested(rig: Rig, m: asyncpg.Record) -> list[datetime]:
    rows = await rig.fetch(
        "SELECT after_round FROM confirmation_rounds WHERE monitor_id = $1 ORDER BY after_round",
        m["id"],
    )
    return [r["after_round"] for r in rows]


async def test_a_first_failure_asks_the_same_hosts_other_monitors_once(rig: Rig) -> None:
    first_m = await rig.monitor(name="Submission", hostname=HOST, port=587)
    other_port = await rig.monitor(name="MX", hostname="MAIL.customer.test.", port=25)
    other_host = await rig.monitor(name="Elsewhere", hostname="mx.other.test", port=25)
    disabled = await rig.monitor(name="Off", hostname=HOST, port=993, status="disabled")
    async with rig.pool.acquire() as conn:
        customer = await customers.create(conn, rig.tenant.org_id, "Another customer")
    another = dataclasses.replace(rig.tenant, customer_id=customer.id)
    theirs = await rig.monitor(name="Theirs", hostname=HOST, port=587, tenant=another)

    failed = rig.clock() - timedelta(seconds=3)
    await rig.round(first_m, 0, DOWN, at=failed)
    await rig.alerter.burst()
    assert await requested(rig, first_m) == [failed]
    assert await requested(rig, other_port) == [failed], "same host name, another port"
    for m in (other_host, disabled, theirs):
        assert await requested(rig, m) == [], m["name"]

    # The sibling's check fails: it asks its own confirmation, not the first monitor's again
    # (that one is in a failing run already).
    sibling_round = failed + timedelta(seconds=1)
    await rig.round(other_port, 0, DOWN, at=sibling_round, trigger=True)
    await rig.alerter.burst()
    assert await requested(rig, other_port) == [failed, sibling_round]
    assert await requested(rig, first_m) == [failed]


async def test_a_declared_dependency_is_a_sibling_either_way(rig: Rig) -> None:
    mx = await rig.monitor(name="MX", hostname="mx.customer.test", port=25)
    gateway = await rig.monitor(name="Gateway", hostname="gw.customer.test", port=25)
    by_host = await rig.monitor(name="Webmail", hostname="web.customer.test", port=443)
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET depends_on = $2 WHERE id = $1",
            gateway["id"],
            [str(mx["public_id"])],
        )
        await conn.execute(
            "UPDATE monitors SET depends_on = $2 WHERE id = $1",
            by_host["id"],
            ["MX.customer.test."],
        )
    failed = rig.clock() - timedelta(seconds=3)
    await rig.round(mx, 0, DOWN, at=failed)
    await rig.alerter.burst()
    assert await requested(rig, gateway) == [failed], "it declares the failing monitor"
    assert await requested(rig, by_host) == [failed], "it declares the failing monitor's host"

    # And the other way: the declaring monitor fails first, the declared one is checked.
    later = rig.clock() - timedelta(seconds=1)
    other = await rig.monitor(name="Relay", hostname="relay.customer.test", port=587)
    async with rig.pool.acquire() as conn:
        await conn.execute(
            "UPDATE monitors SET depends_on = $2 WHERE id = $1", other["id"], ["db.customer.test"]
        )
    db = await rig.monitor(name="DB", hostname="db.customer.test", port=5432)
    await rig.round(other, 0, DOWN, at=later)
    await rig.alerter.burst()
    assert await requested(rig, db) == [later]


async def test_siblings_stay_within_the_organizations_allowance(rig: Rig) -> None:
    # Each monitor is checked from 3 countries: an allowance of 4 checks a minute pays for the
    # failing monitor's own confirmation and no sibling's.
    rig.alerter = wired_alerter(
        rig.pool, rig.js, rig.job_ids, links=LINKS, clock=rig.clock, org_max_checks_per_minute=4
    )
    ms = [await rig.monitor(name=f"Port {p}", hostname=HOST, port=p) for p in (25, 465, 587)]
    failed = rig.clock() - timedelta(seconds=3)
    await rig.round(ms[0], 0, DOWN, at=failed)
    await rig.alerter.burst()
    assert await requested(rig, ms[0]) == [failed]
    assert [await requested(rig, m) for m in ms[1:]] == [[], []]


async def test_at_most_siblings_max_are_asked(rig: Rig) -> None:
    ms = [
        await rig.monitor(name=f"Port {p}", hostname=HOST, port=p, phone=None)
        for p in range(1000, 1000 + confirm.SIBLINGS_MAX + 3)
    ]
    failed = rig.clock() - timedelta(seconds=3)
    await rig.round(ms[0], 0, DOWN, at=failed)
    await rig.alerter.burst()
    asked = await rig.fetch(
        "SELECT count(*) AS n FROM confirmation_rounds WHERE monitor_id = ANY($1::bigint[])",
        [m["id"] for m in ms[1:]],
    )
    assert asked[0]["n"] == confirm.SIBLINGS_MAX


async def test_the_first_notice_waits_for_the_sibling_then_goes_before_the_group_wait(
    rig: Rig,
) -> None:
    rig.alerter = wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        links=LINKS,
        clock=rig.clock,
        incident_group_wait_seconds=30,
        incident_group_interval_seconds=300,
    )
    a = await rig.monitor(name="Relay", hostname=HOST, port=587)
    b = await rig.monitor(name="Submission", hostname=HOST, port=587, phone=None)
    failed = rig.clock() - timedelta(seconds=5)
    await rig.round(a, 0, DOWN, at=failed)
    await rig.alerter.burst()
    assert await requested(rig, b) == [failed]
    await rig.round(a, 0, DOWN, at=failed + timedelta(seconds=1), trigger=True)
    await rig.alerter.burst()
    assert len(await rig.incidents(a)) == 1
    # The sibling's confirmation round is not judged yet: nobody is told.
    assert await rig.outbox_rows(a) == [] and await rig.outbox_rows(b) == []

    await rig.round(b, 0, DOWN, at=failed + timedelta(seconds=2), trigger=True)
    await rig.alerter.burst()
    assert await rig.outbox_rows(a) == [] and await rig.outbox_rows(b) == []  # its own run
    await rig.round(b, 0, DOWN, at=failed + timedelta(seconds=3), trigger=True)
    await rig.alerter.burst()
    # Both down, one flow incident, told now: well within the 30 s group wait.
    (ia,), (ib,) = await rig.incidents(a), await rig.incidents(b)
    assert ia["flow_incident_id"] == ib["flow_incident_id"] is not None
    rows = [*await rig.outbox_rows(a), *await rig.outbox_rows(b)]
    assert {(r["kind"], r["channel"]) for r in rows} == {("down", "email"), ("down", "sms")}
    assert "and 1 more" in rows[0]["subject"]


async def test_a_recovery_confirms_itself_and_the_hosts_monitors_that_are_down(
    rig: Rig,
) -> None:
    a = await rig.monitor(name="Relay", hostname=HOST, port=587)
    b = await rig.monitor(name="IMAP", hostname=HOST, port=993)
    up_elsewhere = await rig.monitor(name="Elsewhere", hostname=HOST, port=25)
    await rig.rounds(a, 0, [DOWN, DOWN])
    await rig.rounds(b, 0, [DOWN, DOWN])
    assert len(await rig.incidents(a)) == len(await rig.incidents(b)) == 1
    before = {m["id"]: await requested(rig, m) for m in (a, b, up_elsewhere)}

    back = rig.clock() - timedelta(seconds=2)
    await rig.round(a, 0, UP, at=back)
    await rig.alerter.burst()
    assert await requested(rig, a) == [*before[a["id"]], back], "its own recovery confirmed"
    assert await requested(rig, b) == [*before[b["id"]], back], "the host's monitor that is down"
    assert await requested(rig, up_elsewhere) == before[up_elsewhere["id"]], "up: nothing new"


async def test_one_organizations_siblings_do_not_push_anothers_confirmation_back(
    rig: Rig,
) -> None:
    """Twenty-one monitors of one organization on a host that fails ask 21 confirmations at
    once; another organization's one failing monitor asks one, a moment later. The global
    budget's first slots (5 of them at 60 a minute) go turn by turn: the other organization's
    is among them."""
    crowd = [
        await rig.monitor(name=f"Port {p}", hostname=HOST, port=p, phone=None)
        for p in range(2000, 2000 + confirm.SIBLINGS_MAX + 1)
    ]
    other = await make_tenant(rig.pool)
    theirs = await rig.monitor(name="Theirs", hostname="mx.theirs.test", tenant=other)
    failed = rig.clock() - timedelta(seconds=3)
    await rig.round(crowd[0], 0, DOWN, at=failed)
    await rig.alerter.burst()
    await rig.round(theirs, 0, DOWN, at=failed + timedelta(seconds=1))
    await rig.alerter.burst()
    async with rig.pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE confirmation_budget SET tat = NULL")
        claimed = await confirm_store.claim(conn, rig.clock(), 60, 100)
    sent = [m for m, _ in claimed.rounds]
    assert len(sent) == 5
    assert theirs["id"] in sent[:2], "the other organization's turn comes at once"


async def test_host_names_that_resolved_to_one_address_are_siblings(rig: Rig) -> None:
    """`flows.same_server` groups host names whose recent results connected to one address:
    the failing monitor's confirmation asks those monitors too (one customer's; not a round
    trip's, whose result names one address for two legs; not an address seen too long ago)."""
    first_m = await rig.monitor(name="MX", hostname="mx.customer.test", port=25)
    alias = await rig.monitor(name="Submission", hostname="smtp.customer.test", port=587)
    elsewhere = await rig.monitor(name="Elsewhere", hostname="mx.other.test", port=25)
    stale = await rig.monitor(name="Old alias", hostname="old.customer.test", port=25)
    async with rig.pool.acquire() as conn:
        customer = await customers.create(conn, rig.tenant.org_id, "Another customer")
    another = dataclasses.replace(rig.tenant, customer_id=customer.id)
    theirs = await rig.monitor(name="Theirs", hostname="mx.theirs.test", port=25, tenant=another)

    seen = rig.clock() - timedelta(minutes=10)
    long_ago = rig.clock() - timedelta(days=2)
    for m, address, at in (
        (first_m, "192.0.2.10", seen),
        (alias, "192.0.2.10", seen),
        (elsewhere, "192.0.2.99", seen),
        (stale, "192.0.2.10", long_ago),
        (theirs, "192.0.2.10", seen),
    ):
        await rig.round(m, 0, UP, at=at)
        async with rig.pool.acquire() as conn:
            await conn.execute(
                "UPDATE result_details SET address = $2 WHERE monitor_id = $1", m["id"], address
            )
    await rig.alerter.burst()

    failed = rig.clock() - timedelta(seconds=3)
    await rig.round(first_m, 0, DOWN, at=failed)
    await rig.alerter.burst()
    assert await requested(rig, first_m) == [failed]
    assert await requested(rig, alias) == [failed], "another host name, the same address"
    for m in (elsewhere, stale, theirs):
        assert await requested(rig, m) == [], m["name"]


async def _store_seen(
    rig: Rig, m: asyncpg.Record, seen: CheckResult, at: datetime, *, trigger: bool = False
) -> None:
    """What the prober saw (its connected address included), as `m`'s round `at` from every
    country of the rig's monitors, decoded as the ingester decodes an agent's result."""
    rows = []
    for cc in ("DE", "FR", "US"):
        r = msgspec.structs.replace(
            seen,
            job_id=rig.job_ids.make(str(m["public_id"]), cc, at, trigger),
            monitor_id=str(m["public_id"]),
            country=cc,
            agent_id=f"{cc}-agent",
            scheduled_at=iso_ms(at),
            started_at=iso_ms(at),
            finished_at=iso_ms(at + timedelta(milliseconds=500)),
        )
        rows.append(results.decode_result(msgspec.json.encode(r)))
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())


async def test_the_first_notice_waits_for_a_host_name_at_the_same_address(
    rig: Rig, tmp_path: Path
) -> None:
    """Two host names the agents resolve to one loopback address, one real SMTP server behind
    it, a monitor on each: the server stops and one monitor's round finds it so. The other is
    asked at once (`siblings`), and the flow incident's first notice waits for its round as it
    waits for a same-host sibling's (`unsettled`, one rule), then names both, before the
    group wait is over."""
    rig.alerter = wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        links=LINKS,
        clock=rig.clock,
        incident_group_wait_seconds=30,
        incident_group_interval_seconds=300,
    )
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 mx.customer.test smtp.customer.test\n")
    resolver = TargetResolver(hosts=str(hosts))
    contexts = build_ssl_contexts()
    peer = SmtpPeer()
    await peer.__aenter__()
    names = {"MX": "mx.customer.test", "Submission": "smtp.customer.test"}
    ms = {n: await rig.monitor(name=n, hostname=h, port=peer.port) for n, h in names.items()}
    jobs = {n: make_job("smtp", peer.port, hostname=h, timeout=5.0) for n, h in names.items()}

    async def check(name: str) -> CheckResult:
        return await run_check(jobs[name], "agent-truth", True, contexts, resolver, clock=WALL)

    try:
        seen = rig.clock() - timedelta(minutes=10)
        for name, m in ms.items():
            up = await check(name)
            assert (up.status, up.address) == ("up", "127.0.0.1"), up.message
            await _store_seen(rig, m, up, seen)
        await rig.alerter.burst()
    finally:
        await peer.__aexit__(None, None, None)
    down = {name: await check(name) for name in ms}
    assert {n: r.status for n, r in down.items()} == dict.fromkeys(ms, "down")

    mx, submission = ms["MX"], ms["Submission"]
    now = rig.clock()  # to the millisecond, as results carry times
    failed = now.replace(microsecond=now.microsecond // 1000 * 1000) - timedelta(seconds=5)
    await _store_seen(rig, mx, down["MX"], failed)
    await rig.alerter.burst()
    assert await requested(rig, submission) == [failed], "another host name, the same address"
    await _store_seen(rig, mx, down["MX"], failed + timedelta(seconds=1), trigger=True)
    await rig.alerter.burst()
    assert len(await rig.incidents(mx)) == 1
    # The other host name's confirmation round is not judged yet: nobody is told.
    assert await rig.outbox_rows(mx) == [] and await rig.outbox_rows(submission) == []

    for n in (2, 3):
        await _store_seen(
            rig, submission, down["Submission"], failed + timedelta(seconds=n), trigger=True
        )
        await rig.alerter.burst()
    (i_mx,), (i_sub,) = await rig.incidents(mx), await rig.incidents(submission)
    assert i_mx["flow_incident_id"] == i_sub["flow_incident_id"] is not None
    rows = [*await rig.outbox_rows(mx), *await rig.outbox_rows(submission)]
    assert {(r["kind"], r["channel"]) for r in rows} == {("down", "email"), ("down", "sms")}
    assert "and 1 more" in rows[0]["subject"], rows[0]["subject"]


async def _address_plan(rig: Rig, monitor_id: int) -> str:
    """`SIBLINGS_QUERY`'s plan for `monitor_id` now, addresses since a day ago, with
    sequential scans priced out."""
    now = rig.clock()
    async with rig.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch(
            f"EXPLAIN {confirm_store.SIBLINGS_QUERY}",
            monitor_id,
            now - confirm.RECENT,
            False,
            confirm.SIBLINGS_MAX,
            now - timedelta(days=1),
            16,
            now,
        )
    return "\n".join(r[0] for r in rows)


async def test_the_address_rule_is_one_indexed_query(rig: Rig) -> None:
    """The address rule reads each candidate's latest rows along `result_details`' key: with
    sequential scans priced out, the plan still finds an index for every read of it."""
    first_m = await rig.monitor(name="MX", hostname="mx.customer.test", port=25)
    plan = await _address_plan(rig, first_m["id"])
    assert "result_details" in plan, plan
    assert "Seq Scan on result_details" not in plan, plan


async def test_the_address_rule_reads_only_rows_naming_an_address(rig: Rig) -> None:
    """A candidate whose results name no address (a down server's checks) costs no rows to
    read, not a day of them: the reads go along the partial index of the rows naming one
    (migration 0144; bench/siblings_cost.py measures it)."""
    first_m = await rig.monitor(name="MX", hostname="mx.customer.test", port=25)
    await rig.monitor(name="Other", hostname="other.customer.test", port=25)
    plan = await _address_plan(rig, first_m["id"])
    assert "result_details_addressed" in plan or "_monitor_id_scheduled_at_idx" in plan, plan


async def test_the_address_rule_reads_no_partition_after_now(rig: Rig) -> None:
    """Each candidate's rows are read from the days between the addresses' since and now: the
    days' partitions made ahead of now, and the default one, are not read (otherwise a probe
    of each per candidate, most of the search's cost)."""
    first_m = await rig.monitor(name="MX", hostname="mx.customer.test", port=25)
    now = rig.clock()
    async with rig.pool.acquire() as conn:
        await results.ensure_partitions(conn, now - timedelta(days=1), 4)
    plan = await _address_plan(rig, first_m["id"])
    read = set(re.findall(r" on result_details_(p\d{8}|default)\b", plan))
    days = {f"p{(now - timedelta(days=d)):%Y%m%d}" for d in (0, 1)}
    assert read and read <= days, plan
