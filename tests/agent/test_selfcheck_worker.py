"""Workers with self-checks on real NATS: a job for a port this agent's canaries cannot reach
goes to another agent of the country; a failure the agent's own path explains is
`inconclusive`, never `down`; one its healthy canary contradicts stays `down`; and the heartbeat
carries the canaries' state and nothing of the jobs.

A canary `127.0.0.2:P` fails (refused) while a peer listens on 127.0.0.1:P: the same port,
unreachable from this agent's point of view. Packet drops are testkit/netns.py's."""

import asyncio
from collections import Counter
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agent.probers.tls import SslContexts
from agent.selfcheck import SelfChecks
from agent.selfcheck_rules import HAND_OVER_TRIES
from agent.sidechecks import Round
from agent.worker import Worker
from shared.clock import WALL
from shared.messages import CheckResult, decode_heartbeat, encode
from shared.sidechecks.readiness import Readiness, ReadinessAsk
from shared.subjects import heartbeats_subject
from tests.agent.helpers import (
    SmtpLikePeer,
    capture,
    closed_port,
    job_for,
    jobs_left,
    publish_job,
    result_count,
    results,
    until,
    until_async,
    worker,
)


def with_canaries(
    nc: NATS,
    country: str,
    contexts: SslContexts,
    canaries: list[tuple[str, int]],
    resolve: str | None = None,
    **options: Any,
) -> Worker:
    checks = SelfChecks(country, canaries, resolve, timeout=1.0, recheck_gap=0, clock=WALL)
    return worker(nc, country, contexts, self_checks=checks, **options)


def checks_of(w: Worker) -> SelfChecks:
    """The worker's self-checks, to look at what they saw."""
    assert w._self_checks is not None
    return w._self_checks


async def canaries_ran(w: Worker) -> None:
    states = checks_of(w).states
    await until(lambda: all(s.ok is not None for s in states))


async def test_jobs_for_a_port_an_agent_cannot_reach_are_run_by_another_agent_of_the_country(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """The blocked agent never runs a check on that port: it hands each job back, and the
    healthy agent runs what it is handed; a job that came back to the blocked one on each
    delivery (which agent a redelivery reaches is the server's choice) ends `inconclusive`
    there, never `down`, after HAND_OVER_TRIES deliveries.

    Six jobs go at once; then jobs go one at a time, both agents idle, until one the blocked
    agent handed back has run on the healthy one (with six at once, the healthy agent may be
    busy each time a handed-back job is delivered again)."""
    async with SmtpLikePeer() as peer:
        blocked = with_canaries(nc, country, ssl_contexts, [("127.0.0.2", peer.port)])
        healthy = with_canaries(nc, country, ssl_contexts, [("127.0.0.1", peer.port)])
        with capture() as logs:
            runs = [asyncio.create_task(w.run()) for w in (blocked, healthy)]
            try:
                await canaries_ran(blocked)
                await canaries_ran(healthy)
                assert checks_of(blocked).blocked == [peer.port]
                jobs = [job_for(country, peer.port) for _ in range(6)]
                for job in jobs:
                    await publish_job(js, job)
                await until_async(lambda: result_count(js, country, 6), within=15)
                for _ in range(ONE_AT_A_TIME):
                    if handed_over(logs, await results(js, country), healthy.agent_id):
                        break
                    jobs.append(job_for(country, peer.port))
                    await publish_job(js, jobs[-1])
                    await until_async(lambda: result_count(js, country, len(jobs)), within=15)
            finally:
                for w in (blocked, healthy):
                    w.stop()
                await asyncio.gather(*runs)
    found = await results(js, country)
    assert sorted(r.job_id for r in found) == sorted(j.job_id for j in jobs)
    by_healthy = [r for r in found if r.agent_id == healthy.agent_id]
    assert all(r.status == "up" for r in by_healthy)
    assert all(r.status == "inconclusive" for r in found if r.agent_id == blocked.agent_id)
    handed = [e for e in logs if e["event"] == "job_handed_back"]
    assert handed and all(e["agent_id"] == blocked.agent_id for e in handed)
    assert all(e["blocked_ports"] == [peer.port] for e in handed)
    assert handed_over(logs, found, healthy.agent_id), "a handed-back job ran on the healthy agent"
    tries = Counter(e["job_id"] for e in handed)
    assert all(
        tries[r.job_id] == HAND_OVER_TRIES - 1 for r in found if r.agent_id == blocked.agent_id
    )
    assert await jobs_left(js, country) == 0


# Jobs sent one at a time at most, until a handed-back one runs on the healthy agent.
ONE_AT_A_TIME = 12


def handed_over(logs: list[dict[str, Any]], found: list[CheckResult], healthy: str) -> bool:
    """Whether a job the blocked agent handed back has a result from the healthy agent."""
    handed = {e["job_id"] for e in logs if e["event"] == "job_handed_back"}
    return any(r.job_id in handed and r.agent_id == healthy for r in found)


async def test_a_lone_agent_that_cannot_reach_the_port_ends_the_job_inconclusive_unrun(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    async with SmtpLikePeer() as peer:
        w = with_canaries(nc, country, ssl_contexts, [("127.0.0.2", peer.port)])
        with capture() as logs:
            run = asyncio.create_task(w.run())
            try:
                await canaries_ran(w)
                job = job_for(country, peer.port)
                await publish_job(js, job)
                await until_async(lambda: result_count(js, country, 1), within=10)
            finally:
                w.stop()
                await run
        assert peer.connections == 0  # only the canary's own, to 127.0.0.2
    (result,) = await results(js, country)
    assert (result.status, result.error_kind) == ("inconclusive", "inconclusive")
    assert result.message == (
        f"inconclusive: this agent cannot reach port {peer.port} (its canaries fail: port"
        f" {peer.port}: 127.0.0.2:{peer.port} refused); no other agent of {country} took the"
        " job, so it was not run"
    )
    handed = [e["attempt"] for e in logs if e["event"] == "job_handed_back"]
    assert handed == list(range(1, HAND_OVER_TRIES))
    (check,) = [e for e in logs if e["event"] == "check"]
    assert (check["status"], check["attempt"]) == ("inconclusive", HAND_OVER_TRIES)


async def test_a_connect_failure_the_recheck_explains_is_inconclusive_with_timings(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """The path worked at the last canary run and broke since (here: the server the canary and
    the check share goes away): the failed check re-runs the canaries, which fail too, so its
    result is `inconclusive`, says what the canary and the check saw, and keeps its timings.
    No side check it asks is run: what it would gather is the broken path's."""
    peer = SmtpLikePeer()
    await peer.__aenter__()
    asked: list[Round] = []

    async def readiness(ask: ReadinessAsk, at: Round) -> Readiness | None:
        asked.append(at)
        return Readiness(domain=ask.domain)

    w = with_canaries(
        nc, country, ssl_contexts, [("127.0.0.1", peer.port)], side_checks={"readiness": readiness}
    )
    with capture() as logs:
        run = asyncio.create_task(w.run())
        try:
            await canaries_ran(w)
            assert checks_of(w).blocked == []
            await peer.__aexit__(None, None, None)
            ask = {"readiness": ReadinessAsk(domain="example.test")}
            job = job_for(country, peer.port, side_checks=ask)
            await publish_job(js, job)
            await until_async(lambda: result_count(js, country, 1), within=10)
        finally:
            w.stop()
            await run
    (result,) = await results(js, country)
    assert (result.status, result.error_kind) == ("inconclusive", "inconclusive")
    assert result.message.startswith(
        f"inconclusive: this agent's canaries for port {peer.port} fail too"
        f" (127.0.0.1:{peer.port} refused); the check saw: refused: "
    )
    assert result.response_time_ms is not None and result.phases.dns_ms is not None
    assert (asked, result.side_checks) == ([], {})
    assert [e["status"] for e in logs if e["event"] == "check"] == ["inconclusive"]
    # The agent's news, bound to the agent, not to the job whose failure started the run.
    (blocked,) = [e for e in logs if e["event"] == "port_blocked"]
    assert (blocked["port"], blocked["agent_id"], "job_id" in blocked) == (
        peer.port,
        w.agent_id,
        False,
    )


async def test_a_connect_failure_with_a_healthy_canary_of_its_port_stays_down(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    async with SmtpLikePeer() as peer:
        w = with_canaries(nc, country, ssl_contexts, [("127.0.0.1", peer.port)])
        run = asyncio.create_task(w.run())
        try:
            await canaries_ran(w)
            await publish_job(js, job_for(country, peer.port, hostname="127.0.0.2"))
            await until_async(lambda: result_count(js, country, 1), within=10)
        finally:
            w.stop()
            await run
    (result,) = await results(js, country)
    assert (result.status, result.error_kind) == ("down", "refused")


async def test_a_dns_failure_is_inconclusive_when_the_resolver_check_fails_and_down_when_not(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """And the heartbeat carries the self-checks' state, which no job can write into."""
    broken = with_canaries(nc, country, ssl_contexts, [], "canary.invalid", heartbeat_interval=0.2)
    fine = with_canaries(nc, country, ssl_contexts, [], "localhost")
    beats = await nc.subscribe(heartbeats_subject(country, broken.agent_id))
    await nc.flush()
    seen: dict[str, str] = {}
    for w in (broken, fine):
        run = asyncio.create_task(w.run())
        try:
            await canaries_ran(w)
            job = job_for(country, 25, hostname="leak-me.invalid")
            await publish_job(js, job)
            await until_async(lambda: result_count(js, country, len(seen) + 1), within=10)
        finally:
            w.stop()
            await run
        seen[w.agent_id] = job.job_id
    by_id = {r.job_id: r for r in await results(js, country)}
    gone, down = by_id[seen[broken.agent_id]], by_id[seen[fine.agent_id]]
    assert (gone.status, gone.error_kind) == ("inconclusive", "inconclusive")
    assert gone.message.startswith(
        "inconclusive: this agent's resolver check fails too (canary.invalid "
    )
    assert "the check saw: dns: cannot resolve leak-me.invalid" in gone.message
    assert (down.status, down.error_kind) == ("down", "dns")
    last = decode_heartbeat((await beats.next_msg(timeout=3)).data)
    while not last.stopping:
        last = decode_heartbeat((await beats.next_msg(timeout=3)).data)
    assert last.self_check is not None
    assert last.self_check.resolver_ok is False
    assert last.self_check.blocked_ports == []
    (canary,) = last.self_check.canaries
    assert (canary.kind, canary.target, canary.ok) == ("resolver", "canary.invalid", False)
    assert b"leak-me" not in encode(last)


async def test_an_agent_without_canaries_sends_no_self_check(
    nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    w = worker(nc, country, ssl_contexts, heartbeat_interval=0.2)
    beats = await nc.subscribe(heartbeats_subject(country, w.agent_id))
    await nc.flush()
    run = asyncio.create_task(w.run())
    try:
        beat = decode_heartbeat((await beats.next_msg(timeout=3)).data)
    finally:
        w.stop()
        await run
    assert beat.self_check is None


async def test_failures_on_ports_without_a_canary_never_rerun_the_canaries(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """A member's monitors aimed at closed ports cannot make the agent connect to its canaries
    over and over: only a failure some self-check looks at re-runs them."""
    closed = closed_port()
    async with SmtpLikePeer() as canary:
        w = with_canaries(nc, country, ssl_contexts, [("127.0.0.1", canary.port)])
        run = asyncio.create_task(w.run())
        try:
            await canaries_ran(w)
            for _ in range(3):
                await publish_job(js, job_for(country, closed))
            await until_async(lambda: result_count(js, country, 3), within=10)
        finally:
            w.stop()
            await run
        assert canary.connections == 1  # the run at start only
    assert {(r.status, r.error_kind) for r in await results(js, country)} == {("down", "refused")}
