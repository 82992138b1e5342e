"""Mail DNS: the MX, SPF, DMARC, MTA-STS, TLS-RPT and TLSA records of a monitor's mail domain,
asked on the DNS cadence from every country of a monitor with a `mailDomain`, judged with the TLS
its country saw on the same round (`rules`); its facts kept by job id in `side_mail_dns`."""

from typing import TYPE_CHECKING, Final

from controller.sidechecks.dns_canary import if_believed
from controller.sidechecks.findings import Verdicts
from controller.sidechecks.frame import (
    ControllerSideCheck,
    Judging,
    of_mail_domain,
    on_dns_rounds,
)
from controller.sidechecks.mail_dns import rules
from shared.messages import default_port
from shared.sidechecks.mail_dns import WIRE, MailDns, MailDnsAsk
from shared.sidechecks.mail_dns_bound import bounded

if TYPE_CHECKING:
    from controller.monitors.store import Monitor


def watched(monitor: "Monitor") -> bool:
    return bool(monitor.mail_domain)


def asking(monitor: "Monitor") -> MailDnsAsk:
    return MailDnsAsk(domain=monitor.mail_domain or "")


def judge(j: Judging[MailDns]) -> Verdicts:
    if not of_mail_domain(j.monitor, j.facts.domain):
        return {}
    m = j.monitor
    port = m.port or (default_port("smtp", m.config) if m.type == "smtp" else 0)
    return rules.mail_dns(m.type, m.hostname, j.facts, j.seen, port)


SIDE_CHECK: Final = ControllerSideCheck(
    name=WIRE.name,
    title="Mail DNS",
    codes=rules.CODES,
    watched=watched,
    wire=WIRE,
    ask=on_dns_rounds(watched, asking),
    judge=if_believed(judge),
    bound=bounded,
    legacy_job=lambda ask: {"mail_domain": ask.domain},
    canaries=lambda facts: facts.canaries,
)
