"""Inconclusive results and agents' self-checks on the controller, against real NATS and
PostgreSQL: results an agent publishes as `inconclusive` are stored and shown as such (counted
like missed), a conclusive result of the same job replaces one (never the reverse); a heartbeat's
`selfCheck` shows in GET /api/agents (the deployment's operators; a tenant's roles see only that
the country is served) and /metrics, capped, and a malformed one is
dropped with a log line while its agent stays live."""

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from controller.fleet.live import LiveAgents
from controller.fleet.self_check import CANARIES_MAX, ERROR_MAX
from controller.jobs.rules import JobIds
from shared.clock import WALL
from shared.messages import AgentHeartbeat, CanaryState, SelfCheck
from shared.subjects import heartbeats_subject
from shared.timefmt import iso_ms, utcnow
from tests.agent.helpers import until
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.console.helpers import Browserish
from tests.pipeline.conftest import Countries, WiredPipeline
from tests.pipeline.test_ingest import publish, result, rows
from tests.pipeline.test_live_agents import beat

WHY = "connect to mx.target.test:25 timed out; canary mx.canary.test:25 timed out too"


def inconclusive(ids: JobIds, monitor: dict[str, Any], cc: str, **extra: Any) -> Any:
    return result(
        ids, monitor, cc, "inconclusive", **{"error_kind": "inconclusive", "message": WHY, **extra}
    )


async def test_inconclusive_results_from_the_stream_are_stored_and_shown_like_missed_ones(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    cc, other = countries.take(2)
    monitor = await create(api, org, allowedCheckCountryCodes=[cc, other])
    labels = {"country": cc, "status": "inconclusive", "error_kind": "inconclusive"}
    counted = REGISTRY.get_sample_value("mailprobe_results_ingested_total", labels) or 0.0
    now = utcnow()
    await publish(pipeline.js, inconclusive(job_ids, monitor, cc, at=now - timedelta(minutes=2)))
    # A failing result whose kind alone says inconclusive is stored as one too.
    await publish(
        pipeline.js, result(job_ids, monitor, other, "down", at=now, error_kind="inconclusive")
    )
    assert await pipeline.ingester.burst() == 2
    stored = [
        (r["country"], r["status"], r["error_kind"])
        for r in await rows(pipe_pool, monitor["publicId"])
    ]
    assert sorted(stored) == sorted(
        [(cc, "inconclusive", "inconclusive"), (other, "inconclusive", "inconclusive")]
    )
    assert REGISTRY.get_sample_value("mailprobe_results_ingested_total", labels) == counted + 1

    base = f"/api/smtp-monitors/{monitor['publicId']}"
    for role in ("admin", "readonly"):
        page = (await api.get(f"{base}/results", headers=org.auth(role))).json()
        assert {(i["country"], i["status"]) for i in page["items"]} == {
            (cc, "inconclusive"),
            (other, "inconclusive"),
        }
    (item,) = [i for i in page["items"] if i["country"] == cc]
    assert (item["errorKind"], item["message"]) == ("inconclusive", WHY)
    got = (await api.get(base, headers=org.auth("readonly"))).json()
    assert {r["country"]: r["status"] for r in got["latestResults"]} == {
        cc: "inconclusive",
        other: "inconclusive",
    }
    states = (await api.get(f"{base}/countries", headers=org.auth())).json()["items"]
    assert [(s["status"], s["consecutiveFailures"]) for s in states] == [("inconclusive", 0)] * 2
    uptime = (await api.get(f"{base}/uptime", headers=org.auth())).json()
    day = uptime["windows"][0]["overall"]
    assert (day["up"], day["down"], day["missed"], day["uptimePercent"]) == (0, 0, 2, None)


async def test_a_conclusive_result_of_the_job_replaces_an_inconclusive_one_never_the_reverse(
    api: httpx.AsyncClient,
    org: Tenant,
    pipe_pool: asyncpg.Pool,
    pipeline: WiredPipeline,
    countries: Countries,
    job_ids: JobIds,
) -> None:
    """Another agent of the country ran the job an agent with a broken path could not judge:
    what it saw stands. An `inconclusive` arriving after a real result (a rogue or late agent)
    changes nothing, so it cannot hide a failure."""
    (cc,) = countries.take()
    monitor = await create(api, org, allowedCheckCountryCodes=[cc])
    now = utcnow()
    first, second = now - timedelta(minutes=3), now - timedelta(minutes=2)
    await publish(pipeline.js, inconclusive(job_ids, monitor, cc, at=first, agent_id="blocked"))
    assert await pipeline.ingester.burst() == 1
    await publish(pipeline.js, result(job_ids, monitor, cc, "down", at=first, agent_id="other"))
    assert await pipeline.ingester.burst() == 1  # replaced
    await publish(pipeline.js, result(job_ids, monitor, cc, "down", at=second, agent_id="other"))
    assert await pipeline.ingester.burst() == 1
    await publish(pipeline.js, inconclusive(job_ids, monitor, cc, at=second, agent_id="late"))
    assert await pipeline.ingester.burst() == 0  # a real result stays
    # The conclusive result is kept whichever came first: in one batch (1 stored) or, when the
    # ingester's standing pull hands them over in two takes, replacing the inconclusive (2).
    third = now - timedelta(minutes=1)
    await publish(pipeline.js, inconclusive(job_ids, monitor, cc, at=third, agent_id="blocked"))
    await publish(pipeline.js, result(job_ids, monitor, cc, "up", at=third, agent_id="other"))
    assert await pipeline.ingester.burst() in (1, 2)
    stored = [(r["agent_id"], r["status"]) for r in await rows(pipe_pool, monitor["publicId"])]
    assert stored == [("other", "down"), ("other", "down"), ("other", "up")]
    base = f"/api/smtp-monitors/{monitor['publicId']}"
    states = (await api.get(f"{base}/countries", headers=org.auth())).json()
    assert states["items"][0]["consecutiveSuccesses"] == 1


def metric_samples(text: str, agent: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("agent",)))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("agent") == agent
    }


async def test_a_heartbeats_self_check_shows_in_the_agents_api_to_operators_and_in_metrics(
    api: httpx.AsyncClient, org: Tenant, countries: Countries
) -> None:
    (cc,) = countries.take()
    agent = f"sc-{uuid.uuid4().hex[:6]}"
    check = SelfCheck(
        canaries=[
            CanaryState(kind="port", target="mx.canary.test:25", ok=False, error="timed out"),
            CanaryState(kind="port", target="mx.canary.test:587", ok=True, latency_ms=12.0),
            CanaryState(kind="port", target="imap.canary.test:993"),  # not run yet
            CanaryState(kind="resolver", target="canary.test", ok=True),
        ],
        blocked_ports=[25],
        resolver_ok=True,
    )
    await countries.live(cc, agent, self_check=check)
    r = await api.get("/api/agents", headers=org.auth("operator"))
    assert r.status_code == 200
    (mine,) = [a for c in r.json()["countries"] if c["country"] == cc for a in c["agents"]]
    assert mine["selfCheck"] == msgspec.to_builtins(check)
    # A tenant's roles: whether the country is served, nothing of its agents (hosts, load,
    # self-check targets are the deployment's).
    for role in ("owner", "admin", "member", "readonly"):
        r = await api.get("/api/agents", headers=org.auth(role))
        assert r.status_code == 200, role
        seen = [c for c in r.json()["countries"] if c["country"] == cc]
        assert seen == [{"country": cc, "agents": [], "live": True}], role
        assert agent not in r.text and "canary.test" not in r.text, role
    r = await api.get("/metrics")
    assert r.status_code == 200
    samples = metric_samples(r.text, agent)
    assert samples == {
        ("mailprobe_live_agent_port_blocked", (("country", cc), ("port", "25"))): 1,
        (
            "mailprobe_live_agent_canary_ok",
            (("country", cc), ("kind", "port"), ("target", "mx.canary.test:25")),
        ): 0,
        (
            "mailprobe_live_agent_canary_ok",
            (("country", cc), ("kind", "port"), ("target", "mx.canary.test:587")),
        ): 1,
        (
            "mailprobe_live_agent_canary_ok",
            (("country", cc), ("kind", "resolver"), ("target", "canary.test")),
        ): 1,
        ("mailprobe_live_agent_resolver_ok", (("country", cc),)): 1,
    }


async def test_a_malformed_self_check_is_dropped_and_an_oversized_one_capped_never_a_500(
    api: httpx.AsyncClient, org: Tenant, nc: NATS, pipeline: WiredPipeline, countries: Countries
) -> None:
    """The agent stays live either way (a bad self-check never makes its country look empty
    to the scheduler), and each is a log line."""
    view = pipeline.agents
    (cc,) = countries.take()
    now = iso_ms(utcnow())
    odd = AgentHeartbeat(agent_id="odd", country=cc, version="odd-1", started_at=now, seen_at=now)
    countries.beats.append(odd)  # said to stop afterwards
    malformed = msgspec.json.encode(
        msgspec.to_builtins(odd)
        | {"selfCheck": {"blockedPorts": ["twenty-five"], "canaries": "all fine"}}
    )
    huge = SelfCheck(
        canaries=[
            CanaryState(kind="port", target=f"c{n}.canary.test:25", ok=False, error="e" * 300)
            for n in range(CANARIES_MAX + 20)
        ],
        blocked_ports=[25, 0, 99999],
    )
    with capture_logs() as logs:
        await nc.publish(heartbeats_subject(cc, "odd"), malformed)
        await countries.live(cc, "huge", self_check=huge)
        await until(lambda: ("odd", cc) in {(a.agent_id, a.country) for a in view.agents()})
    r = await api.get("/api/agents", headers=org.auth("operator"))
    assert r.status_code == 200
    agents = {a["id"]: a for c in r.json()["countries"] if c["country"] == cc for a in c["agents"]}
    assert (agents["odd"]["version"], agents["odd"]["selfCheck"]) == ("odd-1", None)
    kept = agents["huge"]["selfCheck"]
    assert len(kept["canaries"]) == CANARIES_MAX
    assert {len(c["error"]) for c in kept["canaries"]} == {ERROR_MAX}
    assert kept["blockedPorts"] == [25]
    assert (await api.get("/metrics")).status_code == 200
    events = {e["event"] for e in logs if e.get("country") == cc}
    assert {"self_check_malformed", "self_check_capped"} <= events


async def test_a_change_of_an_agents_blocked_ports_is_logged_not_every_beat(nc: NATS) -> None:
    view = LiveAgents(nc, wall=WALL.now)
    subject = heartbeats_subject("DE", "a1")

    def beats(*ports: int) -> None:
        view.heard(subject, beat("DE", "a1", self_check=SelfCheck(blocked_ports=list(ports))))

    with capture_logs() as logs:
        for _ in range(5):
            beats()
        for _ in range(5):
            beats(25)
    changes = [e for e in logs if e["event"] == "agent_blocked_ports_changed"]
    assert [(e["agent_id"], e["blocked_ports"]) for e in changes] == [("a1", [25])]


async def test_the_consoles_agents_page_shows_blocked_ports_and_failing_canaries(
    api: httpx.AsyncClient, org: Tenant, countries: Countries
) -> None:
    (cc,) = countries.take()
    agent = f"page-{uuid.uuid4().hex[:6]}"
    failing = CanaryState(kind="port", target="mx.canary.test:25", ok=False, error="<timed out>")
    healthy = CanaryState(kind="port", target="mx.canary.test:587", ok=True)
    check = SelfCheck(canaries=[failing, healthy], blocked_ports=[25], resolver_ok=False)
    await countries.live(cc, agent, self_check=check)
    r = await Browserish(api, session=org.tokens["operator"]).get("/console/agents")
    assert r.status_code == 200
    (row,) = [line for line in r.text.split("<tr>") if f">{agent}</td>" in line]
    assert "blocked: 25" in row and "resolver failing" in row
    assert "port mx.canary.test:25 failing" in row and "mx.canary.test:587" not in row
    assert 'title="&lt;timed out&gt;"' in row  # the agent's text, escaped
    # a tenant's readonly user: the country served, nothing of its agents
    r = await Browserish(api, session=org.tokens["readonly"]).get("/console/agents")
    assert r.status_code == 200
    (row,) = [line for line in r.text.split("<tr>") if f">{cc}</td>" in line]
    assert "a live agent" in row
    assert agent not in r.text and "canary.test" not in r.text
