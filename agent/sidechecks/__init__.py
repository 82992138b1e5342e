"""Side checks: one module each, one shared shape (`base.AgentSideCheck`), and a plain registry
by name, as `PROBERS` is for kinds. Adding one is a module here and one line below (and its
controller package and line: docs/architecture.md, "Adding a side check")."""

from typing import Final

from agent.sidechecks import (
    blocklists,
    exchange_tls,
    heartbeat_mail,
    mail_dns,
    readiness,
    relay,
    reverse_dns,
)
from agent.sidechecks.base import AgentSideCheck, AnyRunner, AnySideCheck, Round, Runner

_ALL: list[AnySideCheck] = [
    mail_dns.SIDE_CHECK,
    blocklists.SIDE_CHECK,
    reverse_dns.SIDE_CHECK,
    relay.SIDE_CHECK,
    readiness.SIDE_CHECK,
    exchange_tls.SIDE_CHECK,
    heartbeat_mail.SIDE_CHECK,
]
SIDE_CHECKS: Final[dict[str, AnySideCheck]] = {check.wire.name: check for check in _ALL}

__all__ = ["SIDE_CHECKS", "AgentSideCheck", "AnyRunner", "AnySideCheck", "Round", "Runner"]
