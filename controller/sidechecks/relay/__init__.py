"""The open relay test (issue 58): an SMTP monitor that opted in (`relayCheck`) has its server
asked, on the DNS cadence from every country, to take a foreign recipient from a session that
has not logged in (never DATA); the replies judged (`rules`); kept by job id in `side_relay`."""

from typing import TYPE_CHECKING, Final

import msgspec

from controller.sidechecks.findings import Verdicts
from controller.sidechecks.frame import ControllerSideCheck, Judging, on_dns_rounds
from controller.sidechecks.relay import rules
from shared.messages import JobConfig, SmtpConfig
from shared.sidechecks.relay import WIRE, RelayAsk, RelayTest, bounded

if TYPE_CHECKING:
    from controller.monitors.store import Monitor


def watched(monitor: "Monitor") -> bool:
    return isinstance(monitor.config, SmtpConfig) and monitor.config.relay_check


def judge(j: Judging[RelayTest]) -> Verdicts:
    return rules.open_relay(j.facts, j.row.country)


def session_config(config: JobConfig, asked: bool) -> JobConfig:
    """The job's config for an agent that predates `sideChecks`: `relayCheck` only on the
    rounds that ask for the test."""
    if isinstance(config, SmtpConfig) and config.relay_check and not asked:
        return msgspec.structs.replace(config, relay_check=False)
    return config


SIDE_CHECK: Final = ControllerSideCheck(
    name=WIRE.name,
    title="Open relay test",
    codes=rules.CODES,
    watched=watched,
    wire=WIRE,
    ask=on_dns_rounds(watched, lambda _: RelayAsk()),
    judge=judge,
    bound=bounded,
    session_config=session_config,
)
