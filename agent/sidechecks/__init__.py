"""Side checks: one module each, one shared shape (`base.AgentSideCheck`), and a plain registry
by name, as `PROBERS` is for kinds. Adding one is a module here and one line below (and its
controller package and line: docs/architecture.md, "Adding a side check")."""

from typing import Final

from agent.sidechecks import readiness, reverse_dns
from agent.sidechecks.base import AgentSideCheck, AnyRunner, AnySideCheck, Round, Runner

SIDE_CHECKS: Final[dict[str, AnySideCheck]] = {
    check.wire.name: check for check in (reverse_dns.SIDE_CHECK, readiness.SIDE_CHECK)
}

__all__ = ["SIDE_CHECKS", "AgentSideCheck", "AnyRunner", "AnySideCheck", "Round", "Runner"]
