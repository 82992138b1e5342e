"""The report bodies held at once (controller/reports/inflight.py), as tables."""

from controller.reports.inflight import InFlight


def test_one_organization_fills_its_share_of_bytes_received_and_leaves_the_rest_to_others() -> None:
    held = InFlight(most=30, per_organization=20, requests_per_organization=8)
    for org, source in [(1, "a"), (1, "b"), (2, "c")]:
        assert held.admit(org, source)
    # (organization, bytes received, held?)
    steps = [(1, 10, True), (1, 10, True), (1, 1, False), (2, 10, True), (2, 1, False)]
    for org, size, ok in steps:
        assert held.grow(org, size) is ok, (org, size)
    assert (held.held, held.by_organization) == (30, {1: (20, 2), 2: (10, 1)})
    held.leave(1, "b", 10)
    assert held.grow(2, 10) is True
    assert held.admit(3, "d") is True  # a slot is no bytes
    assert held.grow(3, 1) is False  # overall at its bound
    for org, source, size in [(1, "a", 10), (2, "c", 20), (3, "d", 0)]:
        held.leave(org, source, size)
    assert (held.held, held.by_organization, held.by_source) == (0, {}, {})  # nothing tripped


def test_slow_senders_that_declared_much_hold_only_what_arrived() -> None:
    held = InFlight(most=30, per_organization=20)
    for org, source in [(1, "a"), (1, "b"), (3, "c")]:  # each declared 10, sent 1
        assert held.admit(org, source) and held.grow(org, 1)
    assert held.admit(2, "d") and held.grow(2, 10)  # another organization's whole report


def test_requests_are_bounded_per_organization_and_per_source_whatever_their_size() -> None:
    held = InFlight(requests_per_organization=3, requests_per_source=2)
    assert [held.admit(1, s) for s in "aaabc"] == [True, True, False, True, False]
    assert held.admit(2, "a") is False  # the source's slots, whichever organization
    assert held.admit(2, "c") is True
    for org, source in [(1, "a"), (1, "a"), (1, "b"), (2, "c")]:
        held.leave(org, source, 0)
    assert (held.held, held.by_organization, held.by_source) == (0, {}, {})
