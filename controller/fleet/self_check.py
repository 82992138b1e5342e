"""An agent's self-check (`AgentHeartbeat.selfCheck`) as the controller keeps it: capped, so no
agent's heartbeat can make `GET /api/agents` or `/metrics` large. Pure rules, no I/O.

An agent may send anything in its beat (a newer one, a rogue one): the controller keeps at most
`CANARIES_MAX` canaries, one per kind and target (each is a series on /metrics), their texts cut
to length and a latency only when it is a finite non-negative number, and at most `PORTS_MAX`
distinct blocked ports in 1..65535, sorted. What was cut is said, for the log line.
"""

import math

import msgspec

from shared.messages import CanaryState, SelfCheck

CANARIES_MAX = 16
PORTS_MAX = 16
KIND_MAX = 32  # `port`, `resolver`: a label value on /metrics
TARGET_MAX = 255  # host:port, or a name to resolve
ERROR_MAX = 200
TIME_MAX = 40  # an ISO-8601 time


def cap(check: SelfCheck) -> tuple[SelfCheck, list[str]]:
    """`check` within the limits, and what was cut or dropped (empty: nothing)."""
    cut: list[str] = []
    if len(check.canaries) > CANARIES_MAX:
        cut.append(f"{len(check.canaries) - CANARIES_MAX} canaries over {CANARIES_MAX}")
    canaries: dict[tuple[str, str], CanaryState] = {}
    for given in check.canaries[:CANARIES_MAX]:
        c = _canary(given, cut)
        if canaries.setdefault((c.kind, c.target), c) is not c:
            cut.append("a canary named twice (the first is kept)")
    ports = sorted({p for p in check.blocked_ports if 1 <= p <= 65535})
    if len(ports) < len(set(check.blocked_ports)):
        cut.append("blocked ports outside 1..65535")
    if len(ports) > PORTS_MAX:
        cut.append(f"{len(ports) - PORTS_MAX} blocked ports over {PORTS_MAX}")
        ports = ports[:PORTS_MAX]
    return SelfCheck(
        canaries=list(canaries.values()), blocked_ports=ports, resolver_ok=check.resolver_ok
    ), cut


def _canary(c: CanaryState, cut: list[str]) -> CanaryState:
    latency = c.latency_ms
    if latency is not None and not (math.isfinite(latency) and latency >= 0):
        cut.append("a latency that is no duration")
        latency = None
    texts = {
        "kind": (c.kind, KIND_MAX),
        "target": (c.target, TARGET_MAX),
        "error": (c.error, ERROR_MAX),
        "checked_at": (c.checked_at or "", TIME_MAX),
    }
    for name, (text, limit) in texts.items():
        if len(text) > limit:
            cut.append(f"a canary's {name} over {limit} characters")
    return msgspec.structs.replace(
        c,
        kind=c.kind[:KIND_MAX],
        target=c.target[:TARGET_MAX],
        error=c.error[:ERROR_MAX],
        checked_at=None if c.checked_at is None else c.checked_at[:TIME_MAX],
        latency_ms=latency,
    )
