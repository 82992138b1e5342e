"""The fleet tells its operators (issue 66), on real parts: heartbeats on a real NATS server
heard by the controller's live view, results and notices in a real PostgreSQL (a database of
its own: the watch judges every country of its database). A country whose agents stop is one
notice to its organizations' owners once it held, and one when they are back; a stop shorter
than the hold is none; saturated rounds past the threshold are one notice; an agent without a
feature the scheduler uses is one notice naming it. `GET /api/fleet` and the gauge show them."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from controller.db.pool import create_pool
from controller.fleet.health import AGENTS, FEATURES, SATURATION
from controller.fleet.live import LiveAgents
from controller.fleet.watch import FleetWatch
from controller.ingest import store as results
from controller.jobs.result_kinds import SATURATED, ResultRow
from controller.jobs.rules import JobIds
from controller.monitors import store as monitors
from controller.operator_health.rules import HOLD
from controller.oracles.metrics import World
from controller.secrets.box import SecretBox, generate_key
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared.clock import WALL
from shared.messages import AGENT_FEATURES, AgentHeartbeat, encode
from shared.subjects import heartbeats_subject
from shared.timefmt import iso_ms, utcnow
from testkit.serving import http_client, serve_app
from tests.agent.helpers import until
from tests.conftest import Tenant, make_tenant, scratch_database

TTL_S = 15.0
MINUTE = timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
async def fleet_db(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url, "fleet") as url:
        yield url


@pytest.fixture(scope="module")
async def fpool(fleet_db: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(fleet_db, 4)
    yield p
    await p.close()


@pytest.fixture
async def conn_nats(nats_url: str) -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_url)
    yield nc
    await nc.drain()


@pytest.fixture
async def view(conn_nats: NATS) -> AsyncIterator[tuple[LiveAgents, Clock]]:
    clock = Clock()
    live = LiveAgents(conn_nats, ttl_s=TTL_S, warmup_s=0, clock=clock, wall=WALL.now)
    await live.start()
    yield live, clock
    await live.stop()


@pytest.fixture
async def org(fpool: asyncpg.Pool) -> AsyncIterator[Tenant]:
    """A tenant; its monitors and the fleet's states are removed afterwards, so each test
    judges only its own country."""
    yield await make_tenant(fpool)
    async with fpool.acquire() as conn:
        await conn.execute("DELETE FROM monitors")
        await conn.execute("DELETE FROM fleet_health")


async def monitor(pool: asyncpg.Pool, org: Tenant, cc: str) -> monitors.Monitor:
    async with pool.acquire() as conn:
        return await monitors.insert(
            conn,
            org.org_id,
            {
                "customer_id": org.customer_id,
                "type": "smtp",
                "name": f"relay {cc}",
                "hostname": "smtp.customer.test",
                "port": 587,
                "status": "active",
                "check_interval": 60,
                "timeout_seconds": 10,
                "allowed_country_codes": [cc],
                "config": {},
            },
            datetime.now(UTC),
        )


async def beat(nc: NATS, live: LiveAgents, cc: str, agent: str, features: list[str]) -> None:
    """One heartbeat over NATS, waited for until the view has it."""
    now = iso_ms(utcnow())
    body = AgentHeartbeat(
        agent_id=agent, country=cc, started_at=now, seen_at=now, features=features
    )
    await nc.publish(heartbeats_subject(cc, agent), encode(body))
    await until(lambda: any(a.agent_id == agent for a in live.agents()))


async def told(
    pool: asyncpg.Pool, org: Tenant, check: str, cc: str, to: str | None = None
) -> list[str]:
    """The subjects of the fleet notices queued for `org` about `check` in `cc` to `to` (its
    one owner by default; make_tenant's `operator` user is one of the deployment's operators),
    one per notice."""
    rows = await pool.fetch(
        "SELECT subject FROM notification_outbox WHERE organization_id = $1"
        " AND dedupe_key LIKE $2 AND target = $3 ORDER BY id",
        org.org_id,
        f"fleet:{check}:{cc}:%",
        to or org.emails["owner"],
    )
    return [r["subject"] for r in rows]


async def test_a_country_whose_agents_stop_is_told_once_and_once_back_never_for_a_flap(
    fpool: asyncpg.Pool,
    conn_nats: NATS,
    view: tuple[LiveAgents, Clock],
    org: Tenant,
) -> None:
    live, clock = view
    await monitor(fpool, org, "DE")
    watch = FleetWatch(fpool, live, saturated_ratio_max=0.05, clock=WALL)
    t = utcnow()
    await beat(conn_nats, live, "DE", "de-1", list(AGENT_FEATURES))
    await watch.run_once(t)
    # A stop shorter than the hold: nobody is told.
    clock.now += TTL_S + 1
    assert "DE" not in live.countries()
    await watch.run_once(t + MINUTE)
    await watch.run_once(t + MINUTE + HOLD / 2)
    await beat(conn_nats, live, "DE", "de-1", list(AGENT_FEATURES))
    await watch.run_once(t + 2 * MINUTE + HOLD / 2)
    await watch.run_once(t + 2 * MINUTE + 2 * HOLD)
    assert await told(fpool, org, AGENTS, "DE") == []
    # A stop that holds: one notice, however many passes see it.
    clock.now += TTL_S + 1
    stop = t + 3 * HOLD
    for k in range(4):
        await watch.run_once(stop + k * HOLD / 2)
    assert await told(fpool, org, AGENTS, "DE") == ["[mailprobe] No live agent in DE"]
    # Back: one notice once it held.
    await beat(conn_nats, live, "DE", "de-1", list(AGENT_FEATURES))
    back = stop + 3 * HOLD
    for k in range(4):
        await watch.run_once(back + k * HOLD / 2)
    assert await told(fpool, org, AGENTS, "DE") == [
        "[mailprobe] No live agent in DE",
        "[mailprobe] Fleet well again in DE: agents",
    ]


async def test_nothing_is_judged_while_the_live_view_is_not_warm(
    fpool: asyncpg.Pool, nats_url: str, org: Tenant
) -> None:
    """A controller just (re)connected has heard no agent yet: that is no outage."""
    await monitor(fpool, org, "NZ")
    nc = await nats.connect(nats_url)
    live = LiveAgents(nc, warmup_s=3600, wall=WALL.now)
    await live.start()
    try:
        watch = FleetWatch(fpool, live, saturated_ratio_max=0.05, clock=WALL)
        t = utcnow()
        for k in range(3):
            await watch.run_once(t + k * HOLD)
        assert await fpool.fetch("SELECT * FROM fleet_health") == []
    finally:
        await live.stop()
        await nc.drain()


async def saturate(pool: asyncpg.Pool, m: monitors.Monitor, cc: str, at: datetime) -> None:
    """20 rounds of `m` in `cc` within the last minute, 3 of them `saturated` (15 %)."""
    ids = JobIds.from_box(SecretBox(generate_key()))
    rows = []
    for i in range(20):
        when = at - timedelta(seconds=3 * i)
        job = ids.make(str(m.public_id), cc, when)
        kind = SATURATED if i < 3 else "no_agent"
        rows.append(ResultRow.missed(m.public_id, "smtp", cc, job, when, kind, "test"))
    async with pool.acquire() as conn, conn.transaction():
        await results.store(conn, rows, now=utcnow())


async def test_saturated_rounds_past_the_threshold_are_told_once(
    fpool: asyncpg.Pool,
    conn_nats: NATS,
    view: tuple[LiveAgents, Clock],
    org: Tenant,
) -> None:
    live, _ = view
    m = await monitor(fpool, org, "FR")
    await beat(conn_nats, live, "FR", "fr-1", list(AGENT_FEATURES))
    t = utcnow()
    await saturate(fpool, m, "FR", t)
    lenient = FleetWatch(fpool, live, saturated_ratio_max=0.2, clock=WALL)
    for k in range(3):
        await lenient.run_once(t + k * HOLD / 2)
    assert await told(fpool, org, SATURATION, "FR") == []  # 15 % is under 20 %
    await fpool.execute("DELETE FROM fleet_health")
    watch = FleetWatch(fpool, live, saturated_ratio_max=0.1, clock=WALL)
    for k in range(4):
        await watch.run_once(t + k * HOLD / 2)
    assert await told(fpool, org, SATURATION, "FR") == ["[mailprobe] Saturated in FR"]
    body = await fpool.fetchval(
        "SELECT body_text FROM notification_outbox WHERE dedupe_key LIKE 'fleet:saturation:FR:%'"
    )
    assert "3 of 20 rounds saturated (15%, over 10%)" in body
    assert await told(fpool, org, AGENTS, "FR") == []


async def test_an_agent_without_a_feature_is_told_once_and_shown(
    fpool: asyncpg.Pool,
    fleet_db: str,
    conn_nats: NATS,
    view: tuple[LiveAgents, Clock],
    org: Tenant,
) -> None:
    live, _ = view
    await monitor(fpool, org, "SE")
    await beat(conn_nats, live, "SE", "se-new", list(AGENT_FEATURES))
    old = [f for f in AGENT_FEATURES if f not in ("preempt", "preempt_carry")]
    await beat(conn_nats, live, "SE", "se-old", old)
    watch = FleetWatch(fpool, live, saturated_ratio_max=0.05, clock=WALL)
    t = utcnow()
    for k in range(4):
        await watch.run_once(t + k * HOLD / 2)
    assert await told(fpool, org, FEATURES, "SE") == ["[mailprobe] Agents too old in SE"]
    body = await fpool.fetchval(
        "SELECT body_text FROM notification_outbox WHERE dedupe_key LIKE 'fleet:features:SE:%'"
    )
    assert "se-old lacks preempt, preempt_carry" in body
    assert "se-new" not in body

    async with fpool.acquire() as conn:
        await World(clock=WALL)._read(conn)
    gauge = "mailprobe_fleet_state"
    labels = {"check": FEATURES, "country": "SE"}
    assert REGISTRY.get_sample_value(gauge, labels | {"state": "unhealthy"}) == 1.0
    assert REGISTRY.get_sample_value(gauge, labels | {"state": "healthy"}) == 0.0

    settings = ControllerSettings.of(
        database_url=fleet_db, secrets_key=generate_key(), public_url="http://localhost:8080"
    )
    async with serve_app(create_app(settings, fpool)) as url, http_client(base_url=url) as http:
        assert (await http.get("/api/fleet")).status_code == 401
        got = (await http.get("/api/fleet", headers=org.auth("owner"))).json()
    [row] = [c for c in got["checks"] if (c["check"], c["country"]) == (FEATURES, "SE")]
    assert row["state"] == "unhealthy"
    assert "se-old lacks preempt" in row["reason"]
    assert row["whatToDo"].startswith("upgrade")


async def test_a_member_listing_countries_without_agents_tells_no_other_organization(
    fpool: asyncpg.Pool,
    conn_nats: NATS,
    view: tuple[LiveAgents, Clock],
    org: Tenant,
) -> None:
    """An attacker tenant's monitor lists countries no agent serves: only the attacker's own
    owners hear of them; an organization whose monitors run everywhere (no country listed), and
    the deployment's operators, are told of the countries the fleet serves (PT, whose agent
    stops), never of a tenant's wish list."""
    live, clock = view
    victim = org
    async with fpool.acquire() as conn:
        await monitors.insert(
            conn,
            victim.org_id,
            {
                "customer_id": victim.customer_id,
                "type": "smtp",
                "name": "everywhere",
                "hostname": "smtp.victim.test",
                "port": 587,
                "status": "active",
                "check_interval": 60,
                "timeout_seconds": 10,
                "allowed_country_codes": None,
                "config": {},
            },
            datetime.now(UTC),
        )
    attacker = await make_tenant(fpool)
    # the deployment's own people: an operator of an organization of their own, no monitors
    operators = await make_tenant(fpool)
    op = operators.emails["operator"]
    for cc in ("AU", "BR"):
        await monitor(fpool, attacker, cc)
    await beat(conn_nats, live, "PT", "pt-1", list(AGENT_FEATURES))
    watch = FleetWatch(fpool, live, saturated_ratio_max=0.05, clock=WALL)
    t = utcnow()
    for k in range(4):
        await watch.run_once(t + k * HOLD / 2)
    for cc in ("AU", "BR"):
        assert await told(fpool, victim, AGENTS, cc) == []
        assert await told(fpool, attacker, AGENTS, cc) == [f"[mailprobe] No live agent in {cc}"]
        assert await told(fpool, operators, AGENTS, cc, op) == []
    clock.now += TTL_S + 1  # PT's agent stops
    stop = t + 3 * HOLD
    for k in range(4):
        await watch.run_once(stop + k * HOLD / 2)
    assert await told(fpool, victim, AGENTS, "PT") == ["[mailprobe] No live agent in PT"]
    assert await told(fpool, attacker, AGENTS, "PT") == []
    assert await told(fpool, operators, AGENTS, "PT", op) == ["[mailprobe] No live agent in PT"]
    assert await told(fpool, operators, AGENTS, "PT") == []  # its owner is no operator
