"""The report bodies held at once (controller/reports/inflight.py), as tables."""

import pytest

from controller.reports.inflight import InFlight, reserved
from controller.reports.unpacking import MAX_PACKED


@pytest.mark.parametrize(
    ("header", "chunked", "size"),
    [
        ("1234", False, 1234),
        (str(MAX_PACKED), False, MAX_PACKED),
        (str(MAX_PACKED + 1), False, MAX_PACKED),
        (None, True, MAX_PACKED),  # chunks
        ("1", True, MAX_PACKED),  # chunks framed the body, whatever the length said
        (None, False, MAX_PACKED),
        ("not a number", False, MAX_PACKED),
        ("-5", False, 0),
    ],
)
def test_a_request_reserves_its_declared_length_at_most_the_body_limit(
    header: str | None, chunked: bool, size: int
) -> None:
    assert reserved(header, chunked) == size


def test_one_organization_fills_its_share_and_leaves_the_rest_to_others() -> None:
    held = InFlight(most=30, per_organization=20, requests_per_organization=8)
    # (organization, size, reserved?)
    steps = [(1, 10, True), (1, 10, True), (1, 1, False), (2, 10, True), (2, 1, False)]
    for org, size, ok in steps:
        assert held.reserve(org, size) is ok, (org, size)
    assert (held.held, held.by_organization) == (30, {1: (20, 2), 2: (10, 1)})
    held.release(1, 10)
    assert held.reserve(2, 10) is True
    assert held.reserve(3, 1) is False  # overall at its bound
    for org, size in [(1, 10), (2, 10), (2, 10)]:
        held.release(org, size)
    assert (held.held, held.by_organization) == (0, {})  # nothing left tripped


def test_one_organization_holds_so_many_requests_at_most_whatever_their_size() -> None:
    held = InFlight(most=30, per_organization=20, requests_per_organization=3)
    assert [held.reserve(1, 0) for _ in range(4)] == [True, True, True, False]
    assert held.reserve(2, 0) is True
    for org in (1, 1, 1, 2):
        held.release(org, 0)  # requests of no bytes (Content-Length: 0) counted all the same
    assert (held.held, held.by_organization) == (0, {})
