"""The worker's side checks (issue 65), through NATS: what a job asks by name is run after the
core check; one that hangs, raises or whose ask does not fit gives no facts, is reported in the
result's `sideCheckErrors` with its kind (logged) and never holds back or spoils the core result,
nor the other side checks; a name the agent does not know is skipped."""

import asyncio

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from agent.probers.tls import SslContexts
from agent.settings import AgentSettings
from agent.sidechecks import SIDE_CHECKS, AnyRunner, Round
from shared.clock import WALL
from shared.messages import AGENT_FEATURES, FEATURE_SEALED_ASKS
from shared.settings import load
from shared.sidechecks.mail_dns import WIRE as MAIL_DNS
from shared.sidechecks.mail_dns import MailDns, MailDnsAsk
from shared.sidechecks.readiness import WIRE as READINESS
from shared.sidechecks.readiness import ReadinessAsk
from shared.sidechecks.relay import WIRE as RELAY
from shared.sidechecks.relay import RelayAsk
from shared.sidechecks.reverse_dns import WIRE as REVERSE_DNS
from shared.sidechecks.reverse_dns import ReverseDns, ReverseDnsAsk
from testkit.peers.dns import DnsPeer
from tests.agent.helpers import SmtpLikePeer, job_for, publish_job, results, settings_worker


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
        w = settings_worker(
            nc,
            settings,
            ssl_contexts,
            side_checks={"reverse_dns": _hangs, "mail_dns": _raises},
            side_check_grace=0.2,
        )
        with capture_logs() as logs:
            await w.run(burst=True)
    (result,) = [r for r in await results(js, country) if r.job_id == job.job_id]
    assert result.status == "up" and set(result.side_checks) == {"relay"}
    assert result.side_check_errors == {
        "reverse_dns": "timeout",
        "mail_dns": "internal",
        "blocklists": "malformed_ask",
    }
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
        w = settings_worker(
            nc,
            settings,
            ssl_contexts,
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
        w = settings_worker(
            nc,
            settings,
            ssl_contexts,
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
    assert result.side_check_errors == {}  # the relay's facts came from the core session


def _settings_with_dns(country: str, dns: DnsPeer) -> AgentSettings:
    return load(
        AgentSettings,
        {"AGENT_ALLOW_PRIVATE_TARGETS": "true", "AGENT_DNS_RESOLVER": dns.address},
        agent_country=country,
    )


async def test_real_side_checks_on_a_stalling_resolver_take_the_longest_not_the_sum(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """Issue 81: the real mail DNS and readiness side checks, both on a resolver that never
    answers for the domain, each spend their own budget (the job's 1 s timeout) and give their
    facts with the lookups' errors; run together, the round's side work lasts about the
    longest of them, not the sum; none is reported as failed."""
    spans: dict[str, tuple[float, float]] = {}
    async with DnsPeer({}, silent=frozenset({"example.test"})) as dns, SmtpLikePeer() as smtp:
        settings = _settings_with_dns(country, dns)
        targets = settings.targets

        def timed(name: str, real: AnyRunner) -> AnyRunner:
            async def run(ask: object, at: Round) -> object:
                start = asyncio.get_running_loop().time()
                try:
                    return await real(ask, at)
                finally:
                    spans[name] = (start, asyncio.get_running_loop().time())

            return run

        runners = {
            name: timed(name, SIDE_CHECKS[name].build(settings.side_checks, targets, WALL))
            for name in ("mail_dns", "readiness")
        }
        asks = {
            "mail_dns": MailDnsAsk(domain="example.test"),
            "readiness": ReadinessAsk(domain="example.test"),
        }
        job = job_for(country, smtp.port, side_checks=asks, timeout_seconds=1.0)
        await publish_job(js, job)
        w = settings_worker(
            nc,
            settings,
            ssl_contexts,
            side_checks=runners,
        )
        await w.run(burst=True)
        asked = {name for name, _ in dns.asked}
    (result,) = [r for r in await results(js, country) if r.job_id == job.job_id]
    assert result.status == "up" and result.side_check_errors == {}
    assert {"mail_dns", "readiness"} <= set(result.side_checks)
    mail_dns = MAIL_DNS.facts_of(result.side_checks)
    assert mail_dns is not None and mail_dns.mx is None and "mx" in mail_dns.errors
    assert READINESS.facts_of(result.side_checks) is not None
    assert "example.test" in asked  # the stalling server was asked
    durations = {name: end - start for name, (start, end) in spans.items()}
    assert min(durations.values()) >= 0.8  # each waited out its own 1 s budget
    first = min(start for start, _ in spans.values())
    last = max(end for _, end in spans.values())
    assert last - first < sum(durations.values()) - 0.5  # together, not one after another


async def test_a_real_side_check_past_the_deadline_is_reported_with_its_error_kind(
    js: JetStreamContext, nc: NATS, country: str, ssl_contexts: SslContexts
) -> None:
    """Issue 81: a side check that overstays the job's side check deadline (here the real mail
    DNS probe run with five times the job's budget, on a resolver that never answers) ends at
    that deadline as `timeout` in the result's `sideCheckErrors`, never lost; the core result
    and the other side check's facts go out with it."""
    async with DnsPeer({}, silent=frozenset({"example.test"})) as dns, SmtpLikePeer() as smtp:
        settings = _settings_with_dns(country, dns)
        real = SIDE_CHECKS["mail_dns"].build(settings.side_checks, settings.targets, WALL)

        async def overstays(ask: MailDnsAsk, at: Round) -> object:
            longer = msgspec.structs.replace(at.job, timeout_seconds=at.job.timeout_seconds * 5)
            return await real(ask, Round(longer, at.result, at.port, at.resolver))

        asks = {
            "mail_dns": MailDnsAsk(domain="example.test"),
            "readiness": ReadinessAsk(domain="example.test"),
        }
        job = job_for(country, smtp.port, side_checks=asks, timeout_seconds=0.5)
        await publish_job(js, job)
        w = settings_worker(
            nc,
            settings,
            ssl_contexts,
            side_checks={"mail_dns": overstays},
            side_check_grace=0.3,
        )
        started = asyncio.get_running_loop().time()
        with capture_logs() as logs:
            await w.run(burst=True)
        took = asyncio.get_running_loop().time() - started
    (result,) = [r for r in await results(js, country) if r.job_id == job.job_id]
    assert result.status == "up"
    assert result.side_check_errors == {"mail_dns": "timeout"}
    assert "mail_dns" not in result.side_checks and "readiness" in result.side_checks
    assert took < 0.5 * 5  # ended at the deadline, not when the runner's own budget ran out
    assert ("side_check_overstayed", "mail_dns") in {
        (e["event"], e.get("side_check")) for e in logs
    }
