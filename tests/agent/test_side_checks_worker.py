"""The worker's side checks (issue 65), through NATS: what a job asks by name is run after the
core check; one that hangs, raises or whose ask does not fit is left out (logged) and never
holds back or spoils the core result, nor the other side checks; a name the agent does not know
is skipped."""

import asyncio

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from agent.probers.tls import SslContexts
from agent.settings import AgentSettings
from agent.sidechecks import Round
from agent.worker import Worker
from shared.messages import AGENT_FEATURES, FEATURE_SEALED_ASKS
from shared.settings import load
from shared.sidechecks.mail_dns import WIRE as MAIL_DNS
from shared.sidechecks.mail_dns import MailDns, MailDnsAsk
from shared.sidechecks.relay import WIRE as RELAY
from shared.sidechecks.relay import RelayAsk
from shared.sidechecks.reverse_dns import WIRE as REVERSE_DNS
from shared.sidechecks.reverse_dns import ReverseDns, ReverseDnsAsk
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, results


async def _hangs(ask: ReverseDnsAsk, at: Round) -> ReverseDns | None:
    await asyncio.Event().wait()
    return None


async def _raises(ask: MailDnsAsk, at: Round) -> MailDns | None:
    raise RuntimeError("a side check's bug")


async def test_a_side_check_that_hangs_raises_or_does_not_fit_is_left_out(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    async with SmtpLikePeer() as smtp:
        asks = {
            "reverse_dns": ReverseDnsAsk(),
            "mail_dns": MailDnsAsk(domain="example.test"),
            "blocklists": {"zones": "not a list"},
            "relay": RelayAsk(),
            "dkim": {"selectors": ["s1"]},  # a newer controller's side check
        }
        job = job_for(country, smtp.port, side_checks=asks, timeout_seconds=1.0)
        await publish_job(js, job)
        settings = load(
            AgentSettings, {"AGENT_ALLOW_PRIVATE_TARGETS": "true"}, agent_country=country
        )
        w = Worker.from_settings(
            nc,
            settings,
            ssl_contexts=ssl_contexts,
            fetch_timeout=0.2,
            heartbeat_interval=None,
            side_checks={"reverse_dns": _hangs, "mail_dns": _raises},
            side_check_grace=0.2,
        )
        with capture_logs() as logs:
            await w.run(burst=True)
    (result,) = [r for r in await results(js, country) if r.job_id == job.job_id]
    assert result.status == "up" and set(result.side_checks) == {"relay"}
    relay = RELAY.facts_of(result.side_checks)
    assert relay is not None and relay.rcpt_to is not None and relay.rcpt_to.startswith("250")
    left_out = {(e["event"], e.get("side_check")) for e in logs if "side_check" in e}
    assert left_out == {
        ("side_check_overstayed", "reverse_dns"),
        ("side_check_failed", "mail_dns"),
        ("side_check_ask_malformed", "blocklists"),
    }


async def _found(ask: ReverseDnsAsk, at: Round) -> ReverseDns | None:
    return ReverseDns()


async def test_side_facts_of_a_sealed_job_carry_its_asks_and_seal_back(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """Issue 78: the agent echoes a sealed job's `sideChecks` and `asksSeal` as it got them in
    a result with side facts (the controller takes facts only for what they ask); a job
    without a seal (an older controller's), or a result without side facts, echoes nothing."""
    asks = {"reverse_dns": ReverseDnsAsk(), "dkim": {"selectors": ["s1"]}}
    async with SmtpLikePeer() as smtp:
        sealed = job_for(country, smtp.port, side_checks=asks, asks_seal="c2VhbGVk")
        plain = job_for(country, smtp.port, side_checks=asks)
        bare = job_for(country, smtp.port, asks_seal="c2VhbGVk")
        for job in (sealed, plain, bare):
            await publish_job(js, job)
        settings = load(
            AgentSettings, {"AGENT_ALLOW_PRIVATE_TARGETS": "true"}, agent_country=country
        )
        w = Worker.from_settings(
            nc,
            settings,
            ssl_contexts=ssl_contexts,
            fetch_timeout=0.2,
            heartbeat_interval=None,
            side_checks={"reverse_dns": _found},
        )
        await w.run(burst=True)
    got = {r.job_id: r for r in await results(js, country)}
    echoed = got[sealed.job_id]
    assert set(echoed.side_checks) == {"reverse_dns"}
    assert echoed.asks == msgspec.to_builtins(asks)  # as sent, a newer side check's too
    assert echoed.asks_seal == "c2VhbGVk"
    for job in (plain, bare):
        assert (got[job.job_id].asks, got[job.job_id].asks_seal) == ({}, "")
    assert FEATURE_SEALED_ASKS in AGENT_FEATURES  # what the heartbeat announces


async def test_a_jobs_side_checks_run_together_under_one_deadline(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """Issue 81: two slow side checks (0.7 s each) both give their facts, together within the
    one deadline (the job's 1 s timeout and a 0.2 s grace), not in the sum of their times; a
    third that hangs is left out alone at that deadline, holding back neither of the others."""
    spans: dict[str, tuple[float, float]] = {}

    async def slow_reverse(ask: ReverseDnsAsk, at: Round) -> ReverseDns | None:
        start = asyncio.get_running_loop().time()
        await asyncio.sleep(0.7)
        spans["reverse_dns"] = (start, asyncio.get_running_loop().time())
        return ReverseDns(truncated=True)

    async def slow_mail_dns(ask: MailDnsAsk, at: Round) -> MailDns | None:
        start = asyncio.get_running_loop().time()
        await asyncio.sleep(0.7)
        spans["mail_dns"] = (start, asyncio.get_running_loop().time())
        return MailDns(domain="example.test", mx=["mx.example.test"])

    async def hangs(ask: RelayAsk, at: Round) -> None:
        spans["relay"] = (asyncio.get_running_loop().time(), 0.0)
        await asyncio.Event().wait()

    async with SmtpLikePeer() as smtp:
        asks = {
            "reverse_dns": ReverseDnsAsk(),
            "mail_dns": MailDnsAsk(domain="example.test"),
            "relay": RelayAsk(),
        }
        job = job_for(country, smtp.port, side_checks=asks, timeout_seconds=1.0)
        await publish_job(js, job)
        settings = load(
            AgentSettings, {"AGENT_ALLOW_PRIVATE_TARGETS": "true"}, agent_country=country
        )
        w = Worker.from_settings(
            nc,
            settings,
            ssl_contexts=ssl_contexts,
            fetch_timeout=0.2,
            heartbeat_interval=None,
            side_checks={"reverse_dns": slow_reverse, "mail_dns": slow_mail_dns, "relay": hangs},
            side_check_grace=0.2,
        )
        with capture_logs() as logs:
            await w.run(burst=True)
    (result,) = [r for r in await results(js, country) if r.job_id == job.job_id]
    assert result.status == "up"
    assert set(result.side_checks) == {"reverse_dns", "mail_dns", "relay"}  # relay: the prober's
    reverse = REVERSE_DNS.facts_of(result.side_checks)
    assert reverse is not None and reverse.truncated
    mail_dns = MAIL_DNS.facts_of(result.side_checks)
    assert mail_dns is not None and mail_dns.mx == ["mx.example.test"]
    first = min(start for start, _ in spans.values())
    last = max(end for _, end in spans.values())
    assert last - first < 0.7 + 0.7  # together: one after another takes their sum at least
    assert max(start for start, _ in spans.values()) - first < 0.1  # all begun at once
    assert last - first < 1.2 + 0.1  # both slow ones inside the one deadline
    left_out = {(e["event"], e.get("side_check")) for e in logs if "side_check" in e}
    assert left_out == {("side_check_overstayed", "relay")}
