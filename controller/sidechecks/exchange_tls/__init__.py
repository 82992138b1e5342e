"""The Exchange Online TLS 1.0/1.1 retirement (Microsoft MC1293480): every IMAP and POP3
monitor's round on the DNS cadence reports the TLS version it negotiated, from every country;
`rules` raises `tls_legacy_exchange` where the server is Microsoft 365's and the version is
below TLS 1.2; its facts kept by job id in `side_exchange_tls`."""

from typing import TYPE_CHECKING, Final

from controller.sidechecks.exchange_tls import rules
from controller.sidechecks.findings import Verdicts
from controller.sidechecks.frame import ControllerSideCheck, Judging, on_dns_rounds
from shared.messages import ImapPopConfig
from shared.sidechecks.exchange_tls import WIRE, ExchangeTls, ExchangeTlsAsk, bounded

if TYPE_CHECKING:
    from controller.monitors.store import Monitor


def watched(monitor: "Monitor") -> bool:
    return isinstance(monitor.config, ImapPopConfig)


def judge(j: Judging[ExchangeTls]) -> Verdicts:
    return rules.legacy_exchange(j.facts, j.monitor.hostname, j.row.banner, j.row.country)


SIDE_CHECK: Final = ControllerSideCheck(
    name=WIRE.name,
    title="Exchange Online TLS 1.0/1.1 retirement",
    codes=rules.CODES,
    watched=watched,
    wire=WIRE,
    ask=on_dns_rounds(watched, lambda _: ExchangeTlsAsk()),
    judge=judge,
    bound=bounded,
)
