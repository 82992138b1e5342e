"""The worker's side checks (issue 65), through NATS: what a job asks by name is run after the
core check; one that hangs, raises or whose ask does not fit is left out (logged) and never
holds back or spoils the core result, nor the other side checks; a name the agent does not know
is skipped."""

import asyncio

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from agent.probers.tls import SslContexts
from agent.settings import AgentSettings
from agent.sidechecks import Round
from agent.worker import Worker
from shared.settings import load
from shared.sidechecks.mail_dns import MailDns, MailDnsAsk
from shared.sidechecks.relay import WIRE as RELAY
from shared.sidechecks.relay import RelayAsk
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
