"""How the controller caps an agent's self-check (`controller.fleet.self_check.cap`), as a table: no
heartbeat can make GET /api/agents or /metrics large, and what was cut is said."""

import pytest

from controller.fleet.self_check import CANARIES_MAX, ERROR_MAX, PORTS_MAX, TARGET_MAX, cap
from shared.messages import CanaryState, SelfCheck

SMTP = CanaryState(kind="port", target="mx.example.net:25", ok=False, error="timed out")
DNS = CanaryState(kind="resolver", target="example.net", ok=True, latency_ms=3.5)


def canary(n: int, **fields: object) -> CanaryState:
    return CanaryState(kind="port", target=f"c{n}.example.net:25", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "kept", "said"),
    [
        (
            SelfCheck(canaries=[SMTP, DNS], blocked_ports=[587, 25], resolver_ok=True),
            SelfCheck(canaries=[SMTP, DNS], blocked_ports=[25, 587], resolver_ok=True),
            [],
        ),
        (SelfCheck(), SelfCheck(), []),
        (
            SelfCheck(blocked_ports=[0, 25, 25, 65536, -1, 70000]),
            SelfCheck(blocked_ports=[25]),
            ["blocked ports outside 1..65535"],
        ),
        (
            SelfCheck(blocked_ports=list(range(1, PORTS_MAX + 5))),
            SelfCheck(blocked_ports=list(range(1, PORTS_MAX + 1))),
            [f"4 blocked ports over {PORTS_MAX}"],
        ),
        (
            SelfCheck(canaries=[canary(n) for n in range(CANARIES_MAX + 3)]),
            SelfCheck(canaries=[canary(n) for n in range(CANARIES_MAX)]),
            [f"3 canaries over {CANARIES_MAX}"],
        ),
        (
            SelfCheck(canaries=[SMTP, SMTP]),
            SelfCheck(canaries=[SMTP]),
            ["a canary named twice (the first is kept)"],
        ),
        (
            SelfCheck(canaries=[canary(1, error="x" * 5000)]),
            SelfCheck(canaries=[canary(1, error="x" * ERROR_MAX)]),
            [f"a canary's error over {ERROR_MAX} characters"],
        ),
        (
            SelfCheck(canaries=[CanaryState(kind="port", target="t" * 1000)]),
            SelfCheck(canaries=[CanaryState(kind="port", target="t" * TARGET_MAX)]),
            [f"a canary's target over {TARGET_MAX} characters"],
        ),
        (
            SelfCheck(canaries=[canary(1, latency_ms=float("nan")), canary(2, latency_ms=-1.0)]),
            SelfCheck(canaries=[canary(1), canary(2)]),
            ["a latency that is no duration"] * 2,
        ),
    ],
)
def test_a_self_check_is_capped_and_what_was_cut_is_said(
    given: SelfCheck, kept: SelfCheck, said: list[str]
) -> None:
    assert cap(given) == (kept, said)
