"""The self-check verdicts as tables: blocked ports, which failures the agent's own path
explains (then `inconclusive`), and what becomes of a job for a blocked port before it runs."""

from typing import Any

import pytest

from agent.selfcheck_rules import (
    HAND_OVER_DELAY_S,
    HAND_OVER_TRIES,
    Before,
    PathFailure,
    before_run,
    blocked_ports,
    checked,
    explain,
    job_ports,
    not_run_message,
    path_failure,
)
from shared.messages import (
    CanaryState,
    CheckResult,
    ImapPopConfig,
    Phases,
    RoundTripConfig,
    RoundTripReceive,
    SmtpConfig,
)
from testkit.peers.jobs import make_job


def port(target: str, ok: bool | None, error: str = "") -> CanaryState:
    return CanaryState(kind="port", target=target, ok=ok, error=error)


def resolver(ok: bool | None, error: str = "") -> CanaryState:
    return CanaryState(kind="resolver", target="canary.example", ok=ok, error=error)


@pytest.mark.parametrize(
    ("states", "blocked"),
    [
        ([], []),
        ([port("a:25", True)], []),
        ([port("a:25", False)], [25]),
        ([port("a:25", None)], []),  # not run yet
        ([port("a:25", False), port("b:25", True)], []),  # one answers: the path works
        ([port("a:25", False), port("b:25", None)], []),
        ([port("a:25", False), port("b:25", False), port("c:993", True)], [25]),
        ([port("[2001:db8::1]:587", False), port("a:25", False)], [25, 587]),
        ([resolver(False)], []),  # the resolver blocks no port
    ],
)
def test_a_port_is_blocked_only_when_every_canary_of_it_failed(
    states: list[CanaryState], blocked: list[int]
) -> None:
    assert blocked_ports(states) == blocked


def result(kind: str | None, message: str = "", **phases: float) -> CheckResult:
    return CheckResult(
        job_id="j",
        monitor_id="m",
        monitor_type="smtp",
        country="DE",
        agent_id="a",
        scheduled_at="",
        started_at="",
        finished_at="",
        status="up" if kind is None else "down",
        error_kind=kind,
        message=message,
        phases=Phases(**phases),
    )


SMTP = make_job("smtp", 25)
IMAPS = make_job("imap", 993)
ROUNDTRIP = make_job(
    "roundtrip",
    587,
    RoundTripConfig(receive=RoundTripReceive(protocol="imap", port=993)),
)
DNS = {"dns_ms": 1.0}
CONNECTED = {"dns_ms": 1.0, "connect_ms": 2.0}


@pytest.mark.parametrize(
    ("job", "seen", "failure"),
    [
        (SMTP, result(None), None),
        (SMTP, result("dns", "cannot resolve x"), PathFailure("dns")),
        (SMTP, result("refused", "connection refused", **DNS), PathFailure("refused", (25,))),
        (SMTP, result("timeout", "(during connect)", **DNS), PathFailure("timeout", (25,))),
        (SMTP, result("timeout", "(during dns)"), PathFailure("dns")),
        # Once connected, the server answers for what follows.
        (SMTP, result("timeout", "(during greeting)", **CONNECTED), None),
        (SMTP, result("auth", "535 no", **CONNECTED), None),
        (SMTP, result("protocol", "gibberish", **CONNECTED), None),
        (SMTP, result("tls", "handshake failed", **CONNECTED), None),
        (SMTP, result("temporary", "421 busy", **CONNECTED), None),
        (IMAPS, result("refused", "refused", **DNS), PathFailure("refused", (993,))),
        # A round trip's failure is on the leg it names.
        (ROUNDTRIP, result("refused", "send leg: refused", **DNS), PathFailure("refused", (587,))),
        (
            ROUNDTRIP,
            result("refused", "mailbox leg: refused", **CONNECTED),
            PathFailure("refused", (993,)),
        ),
        (ROUNDTRIP, result("refused", "refused", **DNS), PathFailure("refused", (587, 993))),
        (ROUNDTRIP, result("timeout", "(during connect)", **DNS), PathFailure("timeout", (587,))),
        (
            ROUNDTRIP,
            result("timeout", "no answer within 5s (during mailbox leg)", **CONNECTED),
            PathFailure("timeout", (993,)),
        ),
        (ROUNDTRIP, result("timeout", "(during submit)", **CONNECTED), None),
        (ROUNDTRIP, result("not_delivered", "not in INBOX", **CONNECTED), None),
    ],
)
def test_only_failures_before_a_server_answered_can_be_the_agents_path(
    job: Any, seen: CheckResult, failure: PathFailure | None
) -> None:
    assert path_failure(job, seen) == failure


@pytest.mark.parametrize(
    ("job", "ports"),
    [
        (make_job("smtp", 0), (25,)),
        (make_job("smtp", 0, SmtpConfig(secure=True)), (465,)),
        (make_job("pop3", 0, ImapPopConfig(protocol="pop3", tls=True)), (995,)),
        (ROUNDTRIP, (587, 993)),
        (make_job("roundtrip", 25, RoundTripConfig(receive=RoundTripReceive(port=25))), (25,)),
    ],
)
def test_a_jobs_ports_are_its_own_or_both_legs(job: Any, ports: tuple[int, ...]) -> None:
    assert job_ports(job) == ports


FAILING_25 = [port("192.0.2.1:25", False, "timeout connecting"), port("192.0.2.9:993", True)]


@pytest.mark.parametrize(
    ("failure", "states", "why"),
    [
        (
            PathFailure("timeout", (25,)),
            FAILING_25,
            "this agent's canaries for port 25 fail too (192.0.2.1:25 timeout connecting)",
        ),
        (PathFailure("refused", (993,)), FAILING_25, None),  # a healthy canary: the server's
        (PathFailure("refused", (587,)), FAILING_25, None),  # no canary for the port
        (
            PathFailure("refused", (587, 25)),
            FAILING_25,
            "this agent's canaries for port 25 fail too (192.0.2.1:25 timeout connecting)",
        ),
        (
            PathFailure("timeout", (25,)),
            [*FAILING_25, port("192.0.2.2:25", True)],
            None,  # another canary of the port answers
        ),
        (PathFailure("dns"), FAILING_25, None),  # no resolver check
        (PathFailure("dns"), [resolver(True)], None),
        (PathFailure("dns"), [resolver(None)], None),
        (
            PathFailure("dns"),
            [resolver(False, "Name or service not known")],
            "this agent's resolver check fails too (canary.example Name or service not known)",
        ),
        (PathFailure("refused", (25,)), [resolver(False)], None),
    ],
)
def test_a_failure_is_explained_only_by_a_self_check_failing_the_same_way(
    failure: PathFailure, states: list[CanaryState], why: str | None
) -> None:
    assert explain(failure, states) == why


@pytest.mark.parametrize(
    ("failure", "states", "worth_a_recheck"),
    [
        (PathFailure("refused", (25,)), FAILING_25, True),
        (PathFailure("timeout", (2525,)), FAILING_25, False),  # no canary for a monitor's port
        (PathFailure("refused", (2525, 993)), FAILING_25, True),
        (PathFailure("dns"), FAILING_25, False),
        (PathFailure("dns"), [resolver(True)], True),
    ],
)
def test_only_a_failure_some_self_check_looks_at_is_worth_re_running_them(
    failure: PathFailure, states: list[CanaryState], worth_a_recheck: bool
) -> None:
    assert checked(failure, states) is worth_a_recheck


LAST = HAND_OVER_TRIES


@pytest.mark.parametrize(
    ("blocked", "avoided", "delivered", "seconds_left", "verdict"),
    [
        (False, False, 1, 60, "run"),
        (True, False, 1, 60, "hand_back"),
        (True, False, LAST - 1, 60, "hand_back"),
        (True, False, LAST, 60, "inconclusive"),  # no other agent took it
        (True, False, 1, HAND_OVER_DELAY_S, "inconclusive"),  # would expire on the way
        (True, True, LAST, 60, "inconclusive"),
        (False, True, 1, 60, "hand_back"),
        (False, True, LAST, 60, "run"),
        (False, True, 1, 0.0, "run"),
        (True, False, 1, 0.0, "run"),  # expired: run_check says so, without connecting
    ],
)
def test_a_job_for_a_blocked_port_goes_back_a_few_times_then_ends_inconclusive(
    blocked: bool, avoided: bool, delivered: int, seconds_left: float, verdict: Before
) -> None:
    assert (
        before_run(blocked=blocked, avoided=avoided, delivered=delivered, seconds_left=seconds_left)
        == verdict
    )


def test_the_not_run_message_names_the_port_its_failing_canaries_and_the_country() -> None:
    assert not_run_message([25], FAILING_25, "DE") == (
        "inconclusive: this agent cannot reach port 25 (its canaries fail: port 25: 192.0.2.1:25"
        " timeout connecting); no other agent of DE took the job, so it was not run"
    )
