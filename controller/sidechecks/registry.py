"""The controller's side checks, by name: one line each, as agent/sidechecks is the agent's.
Every surface iterates it (the planner, the ingester, posture, the results API, the console,
the metrics); tests/unit/test_side_check_registry.py fails when one is missing from any."""

from typing import Final

from controller.sidechecks import (
    blocklists,
    exchange_tls,
    heartbeat_mail,
    mail_dns,
    readiness,
    relay,
    reports,
    reverse_dns,
)
from controller.sidechecks.frame import AnySideCheck

_ALL: list[AnySideCheck] = [
    mail_dns.SIDE_CHECK,
    blocklists.SIDE_CHECK,
    reverse_dns.SIDE_CHECK,
    relay.SIDE_CHECK,
    reports.SIDE_CHECK,
    readiness.SIDE_CHECK,
    exchange_tls.SIDE_CHECK,
    heartbeat_mail.SIDE_CHECK,
]
SIDE_CHECKS: Final[dict[str, AnySideCheck]] = {check.name: check for check in _ALL}
# Those that ride jobs and results (the others are the controller's alone).
WIRED: Final[dict[str, AnySideCheck]] = {
    name: check for name, check in SIDE_CHECKS.items() if check.wire is not None
}
