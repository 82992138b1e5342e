"""A `dependsOn` host name no monitor checks, found at the addresses the agents saw for it
(issue 80): two real SMTP servers on two loopback addresses, a monitor on each under its own
host name (the agent's resolver reads a hosts file of the test's). The MX monitor's round also
asks its server's reverse DNS from a real loopback DNS server: 127.0.0.1's PTR name is
`mail.test` (the name the server greets with), whose A record holds 127.0.0.1 again
(forward-confirmed). The gateway declares `dependsOn: ["mail.test"]`, a name no monitor
checks. Both servers stop: the two outages are one flow incident, related as declared, and one
page per channel (two flow incidents and two pages before)."""

from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec

from agent.probers.run import run_check
from agent.probers.tls import build_ssl_contexts
from agent.resolver import TargetResolver
from agent.sidechecks.reverse_dns import ReverseDnsProbe
from controller.alerting import flow_store
from controller.ingest import store as results
from shared.clock import WALL
from shared.messages import CheckResult
from shared.sidechecks.reverse_dns import WIRE
from shared.timefmt import iso_ms, utcnow
from testkit.alerting.wired import wired_alerter
from testkit.peers.dns import DnsPeer
from testkit.peers.jobs import make_job
from testkit.peers.smtp import SmtpPeer
from tests.alerting.conftest import LINKS, Rig

COUNTRIES = ("DE", "FR", "US")  # the rig's monitors' countries
# Declared, checked by no monitor; the name the test SMTP servers greet with, so the reverse DNS
# finds no banner mismatch (a finding notice of its own).
RELAY = "mail.test"


async def _store(
    rig: Rig,
    seen: dict[str, tuple[asyncpg.Record, CheckResult]],
    n: int,
    at: datetime | None = None,
) -> None:
    """What the probers saw, as round `n` (or the round `at`) of each monitor from every
    country, decoded as the ingester decodes an agent's result."""
    at = rig.at(n) if at is None else at
    rows = []
    for m, r in seen.values():
        for cc in COUNTRIES:
            one = msgspec.structs.replace(
                r,
                job_id=rig.job_ids.make(str(m["public_id"]), cc, at, False),
                monitor_id=str(m["public_id"]),
                country=cc,
                agent_id=f"{cc}-agent",
                scheduled_at=iso_ms(at),
                started_at=iso_ms(at),
                finished_at=iso_ms(at + timedelta(seconds=1)),
            )
            rows.append(results.decode_result(msgspec.json.encode(one)))
    async with rig.pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())


async def test_a_declared_name_no_monitor_checks_joins_by_its_confirmed_address(
    rig: Rig, tmp_path: Path
) -> None:
    rig.alerter = wired_alerter(
        rig.pool,
        rig.js,
        rig.job_ids,
        incident_group_wait_seconds=30,
        incident_group_interval_seconds=300,
        links=LINKS,
        clock=rig.clock,
    )
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 mx.customer.test\n127.0.0.2 gw.customer.test\n")
    resolver = TargetResolver(hosts=str(hosts))
    contexts = build_ssl_contexts()
    mx_peer, gw_peer = SmtpPeer(), SmtpPeer().at("127.0.0.2")
    await mx_peer.__aenter__()
    await gw_peer.__aenter__()
    mx = await rig.monitor(name="MX", hostname="mx.customer.test", port=mx_peer.port)
    gw = await rig.monitor(name="Gateway", hostname="gw.customer.test", port=gw_peer.port)
    async with rig.pool.acquire() as conn:
        await conn.execute("UPDATE monitors SET depends_on = $2 WHERE id = $1", gw["id"], [RELAY])
    jobs = {
        "mx": make_job("smtp", mx_peer.port, hostname="mx.customer.test", timeout=5.0),
        "gw": make_job("smtp", gw_peer.port, hostname="gw.customer.test", timeout=5.0),
    }
    ms = {"mx": mx, "gw": gw}

    async def checked() -> dict[str, tuple[asyncpg.Record, CheckResult]]:
        return {
            n: (ms[n], await run_check(j, "agent-truth", True, contexts, resolver, clock=WALL))
            for n, j in jobs.items()
        }

    records = {
        ("1.0.0.127.in-addr.arpa", "PTR"): [f"{RELAY}."],
        (RELAY, "A"): ["127.0.0.1"],
    }
    try:
        up = await checked()
        assert {n: (r.status, r.address) for n, (_, r) in up.items()} == {
            "mx": ("up", "127.0.0.1"),
            "gw": ("up", "127.0.0.2"),
        }
        async with DnsPeer(records) as dns:
            ptr = await ReverseDnsProbe(resolver=dns.address, allow_private=True).probe(
                ["127.0.0.1"], 5.0
            )
        (check,) = ptr.addresses
        assert check.confirmed == [RELAY], check
        mx_up = msgspec.structs.replace(up["mx"][1], side_checks={WIRE.name: ptr})
        await _store(rig, {**up, "mx": (mx, mx_up)}, 0)
        await rig.alerter.burst()
    finally:
        await mx_peer.__aexit__(None, None, None)
        await gw_peer.__aexit__(None, None, None)
    async with rig.pool.acquire() as conn:
        found = await flow_store.declared_addresses(
            conn,
            {(RELAY, mx["customer_id"])},
            [mx["id"]],
            rig.at(0) - timedelta(hours=1),
            rig.at(0),
        )
    assert found == [(RELAY, "127.0.0.1")]

    down = await checked()
    assert {n: r.status for n, (_, r) in down.items()} == {"mx": "down", "gw": "down"}
    for n in (1, 2):
        await _store(rig, down, n)
        await rig.alerter.burst()
    rig.clock.shift += timedelta(seconds=31)
    await rig.alerter.burst()
    (i_mx,), (i_gw,) = await rig.incidents(mx), await rig.incidents(gw)
    assert i_mx["flow_incident_id"] == i_gw["flow_incident_id"] is not None
    assert await rig.outbox().burst() == 2  # one e-mail, one SMS
    assert [m["Subject"] for m in rig.relay.messages] == ["[mailprobe] DOWN: MX and 1 more"]


async def test_a_failing_monitor_asks_the_monitors_declaring_a_name_at_its_address(
    rig: Rig, tmp_path: Path
) -> None:
    """Confirmation rounds relate `dependsOn` names by address as the flow grouping does: the
    MX's server stops and only its round finds it so. Asked at once, besides the host name at
    its address (Relay): the gateway declaring `mail.test` (no monitor checks it; the MX's
    reverse DNS, from a real DNS server, names its address so and resolves back) and the one
    declaring `relay.customer.test` (a monitor on it connected to the MX's address). Not the one
    declaring a name seen at no address of the MX's."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 mx.customer.test relay.customer.test\n127.0.0.2 gw.customer.test\n")
    resolver = TargetResolver(hosts=str(hosts))
    contexts = build_ssl_contexts()
    mx_peer, gw_peer = SmtpPeer(), SmtpPeer().at("127.0.0.2")
    await mx_peer.__aenter__()
    await gw_peer.__aenter__()
    mx = await rig.monitor(name="MX", hostname="mx.customer.test", port=mx_peer.port)
    relay = await rig.monitor(name="Relay", hostname="relay.customer.test", port=mx_peer.port)
    declaring = {
        RELAY: await rig.monitor(name="By PTR", hostname="gw.customer.test", port=gw_peer.port),
        "relay.customer.test": await rig.monitor(
            name="By monitor", hostname="gw.customer.test", port=gw_peer.port
        ),
        "other.customer.test": await rig.monitor(
            name="Unrelated", hostname="gw.customer.test", port=gw_peer.port
        ),
    }
    async with rig.pool.acquire() as conn:
        for name, m in declaring.items():
            await conn.execute(
                "UPDATE monitors SET depends_on = $2 WHERE id = $1", m["id"], [name.upper()]
            )
    jobs = {
        "mx": make_job("smtp", mx_peer.port, hostname="mx.customer.test", timeout=5.0),
        "relay": make_job("smtp", mx_peer.port, hostname="relay.customer.test", timeout=5.0),
        "gw": make_job("smtp", gw_peer.port, hostname="gw.customer.test", timeout=5.0),
    }

    async def check(n: str) -> CheckResult:
        return await run_check(jobs[n], "agent-truth", True, contexts, resolver, clock=WALL)

    records = {
        ("1.0.0.127.in-addr.arpa", "PTR"): [f"{RELAY}."],
        (RELAY, "A"): ["127.0.0.1"],
    }
    try:
        up = {n: await check(n) for n in jobs}
        assert {n: (r.status, r.address) for n, r in up.items()} == {
            "mx": ("up", "127.0.0.1"),
            "relay": ("up", "127.0.0.1"),
            "gw": ("up", "127.0.0.2"),
        }
        async with DnsPeer(records) as dns:
            ptr = await ReverseDnsProbe(resolver=dns.address, allow_private=True).probe(
                ["127.0.0.1"], 5.0
            )
        assert [a.confirmed for a in ptr.addresses] == [[RELAY]]
        seen = {
            "mx": (mx, msgspec.structs.replace(up["mx"], side_checks={WIRE.name: ptr})),
            "relay": (relay, up["relay"]),
            **{f"gw{k}": (m, up["gw"]) for k, m in enumerate(declaring.values())},
        }
        await _store(rig, seen, 0)
        await rig.alerter.burst()
    finally:
        await mx_peer.__aexit__(None, None, None)
        await gw_peer.__aexit__(None, None, None)

    down = await check("mx")
    assert down.status == "down", down.message
    now = rig.clock()  # to the millisecond, as results carry times
    failed = now.replace(microsecond=now.microsecond // 1000 * 1000) - timedelta(seconds=3)
    await _store(rig, {"mx": (mx, down)}, 1, failed)
    await rig.alerter.burst()
    asked = {
        r["monitor_id"]
        for r in await rig.fetch(
            "SELECT monitor_id FROM confirmation_rounds WHERE after_round = $1", failed
        )
    }
    names = {m["id"]: m["name"] for m in (mx, relay, *declaring.values())}
    assert {names[i] for i in asked} == {"MX", "Relay", "By PTR", "By monitor"}
