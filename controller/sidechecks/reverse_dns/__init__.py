"""Reverse DNS (issue 58): an SMTP server's addresses' PTR names and whether they resolve back
to them, asked on the DNS cadence from every country, judged with the banner of the same round
(`rules`); its facts kept by job id in `side_reverse_dns`."""

from typing import TYPE_CHECKING, Final

from controller.sidechecks.dns_canary import if_believed
from controller.sidechecks.findings import Verdicts
from controller.sidechecks.frame import ControllerSideCheck, Judging, on_dns_rounds
from controller.sidechecks.reverse_dns import rules
from shared.sidechecks.reverse_dns import WIRE, ReverseDns, ReverseDnsAsk, bounded

if TYPE_CHECKING:
    from controller.monitors.store import Monitor


def watched(monitor: "Monitor") -> bool:
    return monitor.type == "smtp"


def judge(j: Judging[ReverseDns]) -> Verdicts:
    return rules.reverse_dns(j.facts, j.row.banner, j.row.address, j.row.country)


SIDE_CHECK: Final = ControllerSideCheck(
    name=WIRE.name,
    title="Reverse DNS",
    codes=rules.CODES,
    watched=watched,
    wire=WIRE,
    ask=on_dns_rounds(watched, lambda _: ReverseDnsAsk()),
    judge=if_believed(judge),
    bound=bounded,
    legacy_job=lambda _: {"reverse_dns": True},
    canaries=lambda facts: facts.canaries,
)
