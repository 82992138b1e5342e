"""The Exchange Online TLS 1.0/1.1 retirement as a side check of the agent: it reads the TLS
session of its round (the core check's, or its second look's when the server refused TLS 1.2:
agent/probers/run.py), so it costs no connection; the controller judges whether the server is
Microsoft 365's."""

from typing import Final

from agent.settings import SideCheckSettings, TargetSettings
from agent.sidechecks.base import AgentSideCheck, Round, Runner
from shared.clock import Clock
from shared.sidechecks.exchange_tls import WIRE, ExchangeTls, ExchangeTlsAsk, bounded


async def _run(ask: ExchangeTlsAsk, at: Round) -> ExchangeTls | None:
    """The round's TLS version, and its certificate's names when a trusted chain vouched for
    it; None when the round reached no TLS session (nothing to say)."""
    tls = at.result.tls
    if tls is None or tls.version is None:
        return None
    names = list(tls.cert_sans or []) if tls.chain_verified else []
    return bounded(
        ExchangeTls(host=at.job.hostname, version=tls.version, mode=tls.mode, cert_names=names)
    )


def build(
    settings: SideCheckSettings, targets: TargetSettings, clock: Clock
) -> Runner[ExchangeTlsAsk, ExchangeTls]:
    return _run


SIDE_CHECK: Final = AgentSideCheck(WIRE, build)
