"""Self-check verdicts, apart from I/O: which ports an agent's own path blocks, whether a failed
check is explained by that path (then it is `inconclusive`, not `down`), and what becomes of a
job for a blocked port before it runs. agent.selfcheck runs the canaries; agent.worker asks.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from shared.messages import CanaryState, CheckJob, CheckResult, RoundTripConfig, default_port

PORT = "port"
RESOLVER = "resolver"
# A job for a blocked port, or one that lists this agent in `avoidAgents`, goes back for another
# agent of the country this long later (so it never spins between one agent and the server),
# while it has been delivered fewer than HAND_OVER_TRIES times: the consumer delivers a job at
# most 5 times (shared.streams), and the last delivery is kept for a result publish that fails.
# JetStream hands a redelivery to a waiting pull request in turn, so with two agents idle the
# other one gets each redelivery most of the time; all three going back to the same agent is
# the rare case, and then that agent settles the job itself.
HAND_OVER_DELAY_S = 0.2
HAND_OVER_TRIES = 4
Before = Literal["run", "hand_back", "inconclusive"]


@dataclass(frozen=True, slots=True)
class PathFailure:
    """A failure before any server answered: `dns` (the resolver's), or `refused`/`timeout` on
    a connection to one of `ports`."""

    kind: Literal["dns", "refused", "timeout"]
    ports: tuple[int, ...] = ()


def canary_port(state: CanaryState) -> int | None:
    """The port of a port canary (`host:port`, `[v6]:port`); None for the resolver check."""
    return int(state.target.rpartition(":")[2]) if state.kind == PORT else None


def blocked_ports(states: Iterable[CanaryState]) -> list[int]:
    """The ports every canary of which failed its last run. A port with no canary, or with one
    that has not run yet or answered, is not blocked."""
    last: dict[int, list[bool | None]] = {}
    for state in states:
        if (port := canary_port(state)) is not None:
            last.setdefault(port, []).append(state.ok)
    return sorted(port for port, oks in last.items() if all(ok is False for ok in oks))


def resolver_ok(states: Iterable[CanaryState]) -> bool | None:
    """The resolver check's last outcome; None when there is none or it has not run."""
    return next((s.ok for s in states if s.kind == RESOLVER), None)


def job_ports(job: CheckJob) -> tuple[int, ...]:
    """The ports a job connects to: its own; a round trip's send leg's and mailbox leg's."""
    port = job.port or default_port(job.monitor_type, job.config)
    if isinstance(job.config, RoundTripConfig):
        receive = job.config.receive
        return tuple(dict.fromkeys((port, receive.port or default_port(receive.protocol, receive))))
    return (port,)


def path_failure(job: CheckJob, result: CheckResult) -> PathFailure | None:
    """The failure of `result` if it happened before a server answered, else None: anything
    after a connection (auth, protocol, TLS, a 4xx/5xx reply, a timeout once connected) is the
    server's. A round trip's failure is on the leg its message or phases name."""
    kind = result.error_kind
    if result.status != "down" or kind not in ("dns", "refused", "timeout"):
        return None
    ports = job_ports(job)
    send, mailbox = ports[0], ports[-1]
    leg = (send,) if result.message.startswith("send leg:") else ports
    if result.message.startswith("mailbox leg:"):
        leg = (mailbox,)
    if kind == "dns" or (kind == "timeout" and result.phases.dns_ms is None):
        return PathFailure("dns")  # the name never resolved: the resolver's path
    if kind == "refused":
        return PathFailure("refused", leg)
    if result.phases.connect_ms is None:
        return PathFailure("timeout", (send,))  # the first connection never completed
    if isinstance(job.config, RoundTripConfig) and result.message.endswith("(during mailbox leg)"):
        # The send leg was answered; the mailbox leg's connection may never have completed.
        return PathFailure("timeout", (mailbox,))
    return None


def checked(failure: PathFailure, states: list[CanaryState]) -> bool:
    """Whether some self-check looks at the path of `failure` (the resolver check for `dns`, a
    canary of one of its ports): only then is a re-run of the canaries worth its connects."""
    if failure.kind == "dns":
        return any(s.kind == RESOLVER for s in states)
    return any(canary_port(s) in failure.ports for s in states)


def explain(failure: PathFailure, states: list[CanaryState]) -> str | None:
    """Which of this agent's self-checks fails the same way, and what it saw; None when the
    failure stands (no canary for it, or one answers: then the server is at fault)."""
    if failure.kind == "dns":
        resolver = next((s for s in states if s.kind == RESOLVER), None)
        if resolver is None or resolver.ok is not False:
            return None
        return f"this agent's resolver check fails too ({_seen(resolver)})"
    blocked = blocked_ports(states)
    port = next((p for p in failure.ports if p in blocked), None)
    if port is None:
        return None
    return f"this agent's canaries for port {port} fail too ({_failing(states, port)})"


def before_run(*, blocked: bool, avoided: bool, delivered: int, seconds_left: float) -> Before:
    """A job for a blocked port of this agent (or one that avoids it) goes back for another
    agent of the country, a few times and never past its expiry; then a job for a blocked port
    ends `inconclusive` without being run, and an avoided one is run here. An expired job is
    run: run_check ends it `expired` without a connection, as on any agent."""
    if seconds_left <= 0:
        return "run"
    if (blocked or avoided) and delivered < HAND_OVER_TRIES and seconds_left > HAND_OVER_DELAY_S:
        return "hand_back"
    return "inconclusive" if blocked else "run"


def not_run_message(ports: list[int], states: list[CanaryState], country: str) -> str:
    """Why a job for a blocked port ended without being run."""
    canaries = "; ".join(f"port {p}: {_failing(states, p)}" for p in ports)
    return (
        f"inconclusive: this agent cannot reach port {', '.join(map(str, ports))} (its canaries"
        f" fail: {canaries}); no other agent of {country} took the job, so it was not run"
    )


def _failing(states: list[CanaryState], port: int) -> str:
    return ", ".join(_seen(s) for s in states if canary_port(s) == port and s.ok is False)


def _seen(state: CanaryState) -> str:
    return f"{state.target} {state.error}".strip()
