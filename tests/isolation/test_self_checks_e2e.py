"""Agents whose own network path fails are not outages, end to end (issue 16 part 1).

Real `python -m agent` processes, each in a network namespace of its own (testkit/netns.py): in DE
one whose port 25 egress nftables drops and one that is healthy, in US a lone one whose port 25
is dropped, in FR one whose resolver never answers. What they reach is one host-side address
(`Site`): the NATS server, SMTP peers on ports 25 and 587 (the monitored servers and the
canaries alike) and the DNS peer on port 53 that the healthy namespaces resolve through. The
controller (scheduler, ingester, alerter, API) runs here, on PostgreSQL, as `serve` runs it.

The NATS server and the database are this module's own, so these country codes and agents are
seen by no other test.
"""

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.db.pool import create_pool
from controller.fleet.live import LiveAgents
from controller.ingest.ingester import Ingester
from controller.jobs.rules import JobIds
from controller.runtime.pipeline import PUBLISH_ASYNC_MAX_PENDING, Pipeline
from controller.secrets.box import SecretBox
from controller.secrets.seal_keys import CountryKeys
from controller.settings import ControllerSettings
from controller.web.app import create_app
from shared import embedded
from shared.clock import WALL
from shared.streams import ensure_streams
from shared.timefmt import parse_iso
from testkit.alerting.wired import wired_alerter
from testkit.netns import DEAD_RESOLVER, Netns, missing, namespace
from testkit.peers.dns import DnsPeer
from testkit.peers.smtp import SmtpPeer
from testkit.scheduling import wired_scheduler
from testkit.sealing import KeyRing
from testkit.serving import http_client, serve_app
from tests.api.helpers import SMTP
from tests.conftest import PROCESS_START_S, Tenant, make_tenant, scratch_database
from tests.e2e.helpers import make_due_now, smtp_monitor, wait_results

pytestmark = [
    pytest.mark.skipif(missing() is not None, reason=str(missing())),
    # The first test's time includes the module's set-up: a stack, four agent processes
    # (PROCESS_START_S) and their first self-checks (WITHIN).
    pytest.mark.timeout(150),
]

ROOT = Path(__file__).parents[2]
DE, US, FR = "DE", "US", "FR"
MX = "mx.selfcheck.test"  # the monitored server by name: the DNS peer answers the site's address
RESOLVES = "canary.selfcheck.test"  # the resolver canary's name
WITHIN = 15.0
# An agent's pending fetch (pull request) expires at the server after 1 s (agent.worker).
FETCH_EXPIRES_S = 1.5


@dataclass
class Site:
    """The services every namespace reaches, all on one host-side address."""

    ip: str
    nats_url: str
    dns: DnsPeer


@dataclass
class Stack:
    url: str
    pool: asyncpg.Pool


@dataclass
class Agent:
    id: str
    country: str
    ns: Netns
    process: asyncio.subprocess.Process
    log: Path

    def events(self, name: str) -> list[dict[str, Any]]:
        """The agent's JSON log lines with event `name`."""
        lines = self.log.read_text().splitlines()
        found = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in found if e.get("event") == name]


@dataclass
class Agents:
    blocked: Agent  # DE, port 25 dropped
    healthy: Agent  # DE
    lone: Agent  # US, port 25 dropped
    deaf: Agent  # FR, resolver dead


@pytest.fixture(scope="module")
async def site(tmp_root: Path) -> AsyncIterator[Site]:
    async with AsyncExitStack() as stack:
        ns = await stack.enter_async_context(namespace())
        ip = ns.host_ip
        proc, nats_url = await asyncio.to_thread(
            embedded.start_nats, tmp_root / "nats-selfcheck", host=ip
        )
        stack.callback(embedded.stop, proc)
        await stack.enter_async_context(SmtpPeer().at(ip, 25))
        await stack.enter_async_context(SmtpPeer().at(ip, 587))
        records = {(MX, "A"): [ip], (RESOLVES, "A"): [ip]}
        dns = await stack.enter_async_context(DnsPeer(records).at(ip, 53))
        yield Site(ip, nats_url, dns)


@pytest.fixture(scope="module")
async def stack(
    site: Site, database_url: str, settings: ControllerSettings, job_ids: JobIds, tmp_root: Path
) -> AsyncIterator[Stack]:
    """What `serve` runs: scheduler, ingester and alerter as tasks, the API beside them."""
    keys = KeyRing(tmp_root / "selfcheck-seal-keys", (DE, US, FR))
    async with scratch_database(database_url, "mailprobe_selfcheck") as url:
        pool = await create_pool(url, 10)
        nc = await nats.connect(site.nats_url)
        js = nc.jetstream(publish_async_max_pending=PUBLISH_ASYNC_MAX_PENDING)
        await ensure_streams(js)
        live = LiveAgents(nc, warmup_s=0, wall=WALL.now)
        await live.start()
        scheduler = wired_scheduler(
            pool,
            js,
            live,
            SecretBox(settings.secrets.secrets_key or ""),
            CountryKeys(str(keys.directory)),
            default_countries=2,
        )
        ingester = Ingester(pool, nc, js, job_ids, durable="ingest-selfcheck", clock=WALL)
        alerter = wired_alerter(pool, js, job_ids, alert_eval_interval_seconds=0.05)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(r.run(stop)) for r in (scheduler, ingester, alerter)]
        try:
            pipeline = Pipeline(nc, js, live, scheduler, ingester, clock=WALL)
            async with serve_app(create_app(settings, pool, pipeline)) as api_url:
                yield Stack(api_url, pool)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await ingester.close()
            await live.stop()
            await nc.drain()
            await pool.close()


def agent_env(site: Site, agent_id: str, country: str, **values: str) -> dict[str, str]:
    """An agent's environment. Canaries keep their default timeout (5 s): on a loaded host the
    reachable port's canary can take over a second, and a timeout there reads as blocked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "NATS_", "LOG_"))}
    return {
        **env,
        "LOG_FORMAT": "json",
        "AGENT_METRICS_PORT": "0",
        "NATS_URL": site.nats_url,
        "AGENT_COUNTRY": country,
        "AGENT_ID": agent_id,
        "AGENT_ALLOW_PRIVATE_TARGETS": "true",
        **values,
    }


@pytest.fixture(scope="module")
async def agents(site: Site, stack: Stack, tmp_root: Path) -> AsyncIterator[Agents]:
    canaries = f"{site.ip}:25,{site.ip}:587"
    specs = {
        "blocked": (DE, [25], site.ip, {"AGENT_CANARIES": canaries}),
        "healthy": (DE, [], site.ip, {"AGENT_CANARIES": canaries}),
        "lone": (US, [25], site.ip, {"AGENT_CANARIES": canaries}),
        "deaf": (FR, [], DEAD_RESOLVER, {"AGENT_CANARY_RESOLVE": RESOLVES}),
    }
    made: dict[str, Agent] = {}
    async with AsyncExitStack() as exits:
        for role, (cc, drop, nameserver, settings) in specs.items():
            ns = await exits.enter_async_context(namespace(drop_tcp=drop, nameserver=nameserver))
            agent_id = f"{cc}-{role}-{os.getpid()}"
            log = tmp_root / f"{agent_id}.log"
            with log.open("wb") as out:  # the agent keeps its own copy
                process = await ns.spawn(
                    sys.executable,
                    "-m",
                    "agent",
                    env=agent_env(site, agent_id, cc, **settings),
                    cwd=ROOT,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                )
            made[role] = Agent(agent_id, cc, ns, process, log)
        yield Agents(**made)
        # All at once: each takes a moment to finish its fetch and drain.
        await asyncio.gather(*(a.ns.stop_processes() for a in made.values()))


@pytest.fixture(scope="module")
async def org(stack: Stack) -> Tenant:
    return await make_tenant(stack.pool)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=stack.url, timeout=10) as client:
        yield client


async def until(
    check: Callable[[], Any], what: str, within: float = WITHIN, every: float = 0.2
) -> Any:
    """Poll the coroutine function `check` until it returns something true; that."""
    deadline = time.monotonic() + within
    while not (found := await check()):
        assert time.monotonic() < deadline, f"{what} not within {within} s"
        await asyncio.sleep(every)
    return found


@pytest.fixture(scope="module")
async def self_checked(agents: Agents, stack: Stack, org: Tenant) -> dict[str, dict[str, Any]]:
    """Each agent as GET /api/agents shows it, once all of them beat after their first
    canary run: agent id → its entry."""
    async with http_client(base_url=stack.url, timeout=10) as api:

        async def listed() -> dict[str, dict[str, Any]] | None:
            r = await api.get("/api/agents", headers=org.auth("operator"))
            assert r.status_code == 200, r.text
            seen = {a["id"]: a for c in r.json()["countries"] for a in c["agents"]}
            ids = [a.id for a in (agents.blocked, agents.healthy, agents.lone, agents.deaf)]
            ran = all(
                a in seen
                and seen[a]["selfCheck"]
                and all(c["ok"] is not None for c in seen[a]["selfCheck"]["canaries"])
                for a in ids
            )
            return seen if ran else None

        # Four agent processes start at once: on a loaded host that alone can take WITHIN.
        for agent in (agents.blocked, agents.healthy, agents.lone, agents.deaf):

            async def started(agent: Agent = agent) -> bool:
                return bool(agent.events("agent_started"))

            await until(started, f"{agent.id} started", within=PROCESS_START_S)
        found: dict[str, dict[str, Any]] = await until(listed, "every agent's first self-check")
        return found


def handed_back(agent: Agent) -> set[str]:
    """The ids of the jobs `agent` handed back for another agent of its country, alone or
    in a bundle."""
    alone = {e["job_id"] for e in agent.events("job_handed_back")}
    return alone | {i for e in agent.events("bundle_handed_back") for i in e["job_ids"]}


async def agent_series(api: httpx.AsyncClient) -> list[tuple[str, dict[str, str], float]]:
    """The controller's /metrics series about live agents (those with an `agent` label): name,
    labels, value."""
    r = await api.get("/metrics")
    assert r.status_code == 200
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if "agent" in s.labels
    ]


async def alert_state(stack: Stack, public_id: str) -> asyncpg.Record | None:
    async with stack.pool.acquire() as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT s.state, s.last_round_at FROM monitor_alert_state s"
            " JOIN monitors m ON m.id = s.monitor_id WHERE m.public_id = $1",
            public_id,
        )
    return row


async def judged(stack: Stack, public_id: str, scheduled_at: datetime) -> str:
    """The monitor's alert state once the alerter judged the round scheduled at
    `scheduled_at`."""

    async def state() -> str | None:
        row = await alert_state(stack, public_id)
        ok = row is not None and row["last_round_at"] and row["last_round_at"] >= scheduled_at
        return str(row["state"]) if ok and row is not None else None

    found: str = await until(state, "the alerter's verdict on the round")
    return found


async def notifications(stack: Stack, public_id: str) -> list[str]:
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT o.kind FROM notification_outbox o JOIN monitors m ON m.id = o.monitor_id"
            " WHERE m.public_id = $1",
            public_id,
        )
    return [r["kind"] for r in rows]


async def incidents(api: httpx.AsyncClient, org: Tenant, public_id: str) -> list[Any]:
    r = await api.get(f"{SMTP}/{public_id}/incidents", headers=org.auth())
    assert r.status_code == 200, r.text
    items: list[Any] = r.json()["items"]
    return items


async def test_port_25_jobs_of_an_agent_that_cannot_reach_it_are_run_by_its_country_peer(
    api: httpx.AsyncClient,
    org: Tenant,
    stack: Stack,
    site: Site,
    agents: Agents,
    self_checked: dict[str, dict[str, Any]],
) -> None:
    """DE's blocked agent says so (API, /metrics), hands its port-25 jobs back, and the healthy
    one runs them: never a `down` from the blocked one."""
    blocked, healthy = self_checked[agents.blocked.id], self_checked[agents.healthy.id]
    assert blocked["selfCheck"]["blockedPorts"] == [25]
    states = {c["target"]: c for c in blocked["selfCheck"]["canaries"]}
    assert (states[f"{site.ip}:25"]["ok"], states[f"{site.ip}:25"]["error"]) == (
        False,
        "timeout connecting",
    )
    assert states[f"{site.ip}:587"]["ok"] is True
    assert healthy["selfCheck"]["blockedPorts"] == []
    seen = await agent_series(api)
    a, b = {"country": DE, "agent": agents.blocked.id}, {"country": DE, "agent": agents.healthy.id}
    expected = [
        ("mailprobe_live_agent_port_blocked", {**a, "port": "25"}, 1.0),
        ("mailprobe_live_agent_canary_ok", {**a, "kind": "port", "target": f"{site.ip}:25"}, 0.0),
        ("mailprobe_live_agent_canary_ok", {**a, "kind": "port", "target": f"{site.ip}:587"}, 1.0),
        ("mailprobe_live_agent_canary_ok", {**b, "kind": "port", "target": f"{site.ip}:25"}, 1.0),
    ]
    assert [e for e in expected if e not in seen] == []
    blocked_in_de = [
        s for s in seen if s[0] == "mailprobe_live_agent_port_blocked" and s[1]["country"] == DE
    ]
    assert blocked_in_de == [expected[0]]

    # The healthy agent is frozen while the jobs arrive (once its pending fetch expired at the
    # server), so the blocked one surely gets each first; it thaws as soon as it handed one back.
    os.kill(agents.healthy.process.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(FETCH_EXPIRES_S)
        made = [  # a new monitor's first round is due at once
            await smtp_monitor(
                api,
                org,
                25,
                hostname=site.ip,
                allowedCheckCountryCodes=[DE],
                notificationEmail="oncall@customer.test",
            )
            for _ in range(4)
        ]

        async def one_handed_back() -> bool:
            return bool(handed_back(agents.blocked))

        await until(one_handed_back, "the blocked agent handing a job back", every=0.01)
    finally:
        os.kill(agents.healthy.process.pid, signal.SIGCONT)
    ids = [m["publicId"] for m in made]
    found = [
        (await wait_results(api, org, pid, lambda i: len(i) >= 1, within=WITHIN))[0] for pid in ids
    ]
    assert all(r["status"] != "down" for r in found), found
    by_healthy = [r for r in found if r["agentId"] == agents.healthy.id]
    assert by_healthy and all(r["status"] == "up" for r in by_healthy), found
    assert all(r["status"] == "inconclusive" for r in found if r["agentId"] == agents.blocked.id)
    assert handed_back(agents.blocked) <= {r["jobId"] for r in found}
    handing = agents.blocked.events("job_handed_back") + agents.blocked.events("bundle_handed_back")
    assert all(e["blocked_ports"] == [25] for e in handing)
    assert not handed_back(agents.healthy)
    for pid, r in zip(ids, found, strict=True):
        assert await judged(stack, pid, parse_iso(r["scheduledAt"])) in ("up", "missed")
        assert await notifications(stack, pid) == []


async def test_a_lone_agent_that_cannot_reach_port_25_leaves_its_monitor_inconclusive_unnotified(
    api: httpx.AsyncClient,
    org: Tenant,
    stack: Stack,
    site: Site,
    agents: Agents,
    self_checked: dict[str, dict[str, Any]],
) -> None:
    """Two rounds (`downAfterRounds`) of US results that the agent's own path explains: each
    `inconclusive` in the API, the monitor `missed`, never down; no incident, no notification."""
    assert self_checked[agents.lone.id]["selfCheck"]["blockedPorts"] == [25]
    created = await smtp_monitor(
        api,
        org,
        25,
        hostname=site.ip,
        allowedCheckCountryCodes=[US],
        notificationEmail="oncall@customer.test",
    )
    pid = created["publicId"]
    await wait_results(api, org, pid, lambda i: len(i) >= 1, within=WITHIN)  # due at creation
    await make_due_now(stack.pool, pid)
    items = await wait_results(api, org, pid, lambda i: len(i) >= 2, within=WITHIN)
    assert [(r["status"], r["errorKind"], r["agentId"]) for r in items] == [
        ("inconclusive", "inconclusive", agents.lone.id)
    ] * 2
    assert items[0]["message"].startswith("inconclusive: this agent cannot reach port 25 ")
    latest = max(parse_iso(r["scheduledAt"]) for r in items)
    assert await judged(stack, pid, latest) == "missed"
    r = await api.get(f"{SMTP}/{pid}/countries", headers=org.auth())
    assert r.status_code == 200, r.text
    assert [(c["country"], c["status"]) for c in r.json()["items"]] == [(US, "inconclusive")]
    assert await incidents(api, org, pid) == []
    assert await notifications(stack, pid) == []


async def test_a_dead_resolver_makes_checks_by_name_inconclusive_while_another_country_resolves(
    api: httpx.AsyncClient,
    org: Tenant,
    stack: Stack,
    site: Site,
    agents: Agents,
    self_checked: dict[str, dict[str, Any]],
) -> None:
    """FR's resolver never answers and its resolver canary says so: its check of the monitor
    by name is `inconclusive`, not `down`/`dns`; DE resolves the same name at the DNS peer and
    finds the server up, so the monitor is up."""
    deaf = self_checked[agents.deaf.id]["selfCheck"]
    assert deaf["resolverOk"] is False
    assert [(c["kind"], c["target"], c["ok"]) for c in deaf["canaries"]] == [
        ("resolver", RESOLVES, False)
    ]
    fr = {"country": FR, "agent": agents.deaf.id}
    assert ("mailprobe_live_agent_resolver_ok", fr, 0.0) in await agent_series(api)
    created = await smtp_monitor(
        api,
        org,
        587,
        hostname=MX,
        allowedCheckCountryCodes=[FR, DE],
        notificationEmail="oncall@customer.test",
    )
    pid = created["publicId"]  # its first round is due at once
    items = await wait_results(api, org, pid, lambda i: len(i) >= 2, within=WITHIN)
    by_country = {r["country"]: r for r in items}
    assert (by_country[FR]["status"], by_country[FR]["errorKind"]) == (
        "inconclusive",
        "inconclusive",
    )
    assert "this agent's resolver check fails too" in by_country[FR]["message"]
    assert by_country[DE]["status"] == "up"
    assert (MX, "A") in site.dns.asked
    assert await judged(stack, pid, parse_iso(items[0]["scheduledAt"])) == "up"
    assert await notifications(stack, pid) == []
