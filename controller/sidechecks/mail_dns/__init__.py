"""Mail DNS: the MX, SPF, DMARC, MTA-STS, TLS-RPT and TLSA records of a monitor's mail domain,
asked on the DNS cadence from every country of a monitor with a `mailDomain`, judged with the TLS
its country saw on the same round (`rules`); its facts kept by job id in `side_mail_dns`."""

from typing import TYPE_CHECKING, Final

from controller.sidechecks.dns_canary import resolver_health
from controller.sidechecks.findings import Verdicts
from controller.sidechecks.frame import ControllerSideCheck, Judging, Planning
from controller.sidechecks.mail_dns import rules
from shared.sidechecks.mail_dns import WIRE, MailDns, MailDnsAsk
from shared.sidechecks.mail_dns_bound import bounded

if TYPE_CHECKING:
    from controller.monitors.store import Monitor


def watched(monitor: "Monitor") -> bool:
    return bool(monitor.mail_domain)


def ask(p: Planning) -> MailDnsAsk | None:
    domain = p.monitor.mail_domain
    return MailDnsAsk(domain=domain) if p.dns_due and domain else None


def judge(j: Judging[MailDns]) -> Verdicts:
    if not resolver_health(j.facts.canaries).believed:
        return {}  # the resolver failed its canaries: what it answered is unknown
    return rules.mail_dns(j.monitor.type, j.monitor.hostname, j.facts, j.seen)


SIDE_CHECK: Final = ControllerSideCheck(
    name=WIRE.name,
    title="Mail DNS",
    codes=rules.CODES,
    watched=watched,
    wire=WIRE,
    ask=ask,
    judge=judge,
    bound=bounded,
    legacy_job=lambda ask: {"mail_domain": ask.domain},
)
