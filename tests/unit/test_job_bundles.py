"""Which jobs travel together (controller.scheduling.bundles) and how many messages an agent asks
for (agent.worker), as tables; what it keeps of a fetch is tests/agent/test_worker_room.py's."""

from typing import Any

import pytest

from agent.job_feed import messages_to_ask, per_message
from controller.scheduling.bundles import bundle_size, may_bundle, outgoing
from shared.messages import CheckJob, bundle_parts, decode_job, encode
from shared.subjects import jobs_subject
from testkit.peers.jobs import make_job


def job(n: int, country: str = "DE", monitor_type: Any = "smtp", **extra: Any) -> CheckJob:
    return make_job(monitor_type, 25, job_id=f"j{n}", country=country, **extra)


@pytest.mark.parametrize(
    ("extra", "monitor_type", "bundled"),
    [
        ({}, "smtp", True),
        ({}, "imap", True),
        ({"mail_domain": "example.org"}, "pop3", True),
        ({"sealed_config": "c2VhbGVk", "seal_key_id": "k1"}, "imap", False),  # logs in
        ({}, "roundtrip", False),  # sends mail
        ({"avoid_agents": ["DE-a-1"]}, "smtp", False),  # handed back by the agent it names
    ],
)
def test_only_jobs_that_may_run_twice_go_in_a_bundle(
    extra: dict[str, Any], monitor_type: Any, bundled: bool
) -> None:
    assert may_bundle(job(1, monitor_type=monitor_type, **extra)) is bundled


def _shape(jobs: list[CheckJob], bundling: frozenset[str], size: int = 3) -> list[Any]:
    """Each message as (subject, msg id, job ids): a lone job's ids are a str."""
    shaped: list[Any] = []
    for out in outgoing(jobs, bundling, size):
        parts = bundle_parts(out.payload)
        ids = (
            decode_job(out.payload).job_id
            if parts is None
            else [decode_job(p).job_id for p in parts]
        )
        shaped.append((out.subject.removeprefix("mon.jobs."), out.msg_id, ids))
    return shaped


def test_a_country_whose_agents_do_not_all_take_bundles_gets_every_job_alone() -> None:
    jobs = [job(1), job(2, "US"), job(3)]
    assert _shape(jobs, frozenset()) == [("DE", "j1", "j1"), ("US", "j2", "j2"), ("DE", "j3", "j3")]
    assert _shape(jobs, frozenset({"FR"})) == _shape(jobs, frozenset())


def test_each_countrys_jobs_go_in_bundles_of_at_most_the_size_in_order() -> None:
    jobs = [job(n, "DE" if n % 2 else "US") for n in range(1, 10)]  # DE: 1 3 5 7 9
    assert _shape(jobs, frozenset({"DE", "US"})) == [
        ("DE", "j1+3", ["j1", "j3", "j5"]),
        ("DE", "j7+2", ["j7", "j9"]),
        ("US", "j2+3", ["j2", "j4", "j6"]),
        ("US", "j8", "j8"),  # one left: a job alone, as an older agent would take it
    ]


def test_a_job_that_may_not_run_twice_goes_alone_beside_its_countrys_bundle() -> None:
    jobs = [job(1), job(2, monitor_type="roundtrip"), job(3), job(4, avoid_agents=["DE-a"])]
    assert _shape(jobs, frozenset({"DE"})) == [
        ("DE", "j2", "j2"),
        ("DE", "j4", "j4"),
        ("DE", "j1+2", ["j1", "j3"]),
    ]


def test_the_same_jobs_make_the_same_messages_so_a_publish_again_is_deduped() -> None:
    jobs = [job(n) for n in range(7)]
    first, again = outgoing(jobs, frozenset({"DE"})), outgoing(list(jobs), frozenset({"DE"}))
    assert first == again
    assert len({out.msg_id for out in first}) == len(first)


def test_a_bundle_carries_each_job_as_encode_makes_it() -> None:
    jobs = [job(1, mail_domain="example.org"), job(2, monitor_type="imap")]
    [out] = outgoing(jobs, frozenset({"DE"}))
    assert out.subject == jobs_subject("DE")
    assert bundle_parts(out.payload) == [encode(j) for j in jobs]
    assert [decode_job(p) for p in bundle_parts(out.payload) or []] == jobs


@pytest.mark.parametrize(
    ("average", "seen", "then"),
    [
        (1.0, 1.0, 1.0),  # one job a message
        (1.0, 50.0, 50.0),  # bundles: up at once
        (50.0, 1.0, 35.3),  # jobs alone again: down slowly
        (35.3, 35.3, 35.3),
        (10.0, 20.0, 20.0),
    ],
)
def test_the_jobs_per_message_asked_by_rise_at_once_and_fall_slowly(
    average: float, seen: float, then: float
) -> None:
    assert per_message(average, seen) == pytest.approx(then)


@pytest.mark.parametrize(
    ("free", "jobs_per_message", "asked"),
    [(400, 1.0, 400), (400, 50.0, 8), (30, 50.0, 1), (1, 1.0, 1), (399, 35.3, 11)],
)
def test_a_pull_request_asks_for_the_room_in_messages(
    free: int, jobs_per_message: float, asked: int
) -> None:
    assert messages_to_ask(free, jobs_per_message) == asked


@pytest.mark.parametrize(
    ("capacities", "size"),
    [([], 50), ([200], 50), ([4, 2, 8], 2), ([1, 1000], 1), ([0], 50), ([0, 3], 3)],
)
def test_a_bundle_is_never_larger_than_the_smallest_agents_slots(
    capacities: list[int], size: int
) -> None:
    """0: an agent that does not say its capacity."""
    assert bundle_size(capacities) == size
    jobs = [job(n) for n in range(60)]
    shaped = outgoing(jobs, frozenset({"DE"}), sizes={"DE": size})
    assert max(len(bundle_parts(o.payload) or [o.payload]) for o in shaped) == size
