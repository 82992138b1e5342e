"""The API's request rate per source address (controller.web.request_rate): a token bucket per
address, IPv6 by its /64, in a table of bounded size."""

import pytest

from controller.web.request_rate import RequestRate


@pytest.mark.parametrize(
    ("times", "waits"),
    [
        # a burst of 3 at once, then the 4th waits for its token (2 a second: 0.5 s)
        ([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5]),
        # a token back every 0.5 s
        ([0.0, 0.0, 0.0, 0.5, 0.5, 0.75], [0.0, 0.0, 0.0, 0.0, 0.5, 0.25]),
        # idle for long: the bucket full again, never past the burst
        ([0.0, 0.0, 0.0, 100.0, 100.0, 100.0, 100.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5]),
    ],
    ids=["burst", "refill", "capped"],
)
def test_one_address_takes_its_burst_then_its_rate(times: list[float], waits: list[float]) -> None:
    rate = RequestRate(per_second=2, burst=3)
    got = [rate.take("192.0.2.1", at) for at in times]
    assert got == pytest.approx(waits)


def test_a_refused_request_spends_nothing() -> None:
    """A client retrying at once gets the same wait again, less the time passed."""
    rate = RequestRate(per_second=1, burst=1)
    assert rate.take("192.0.2.1", 0.0) == 0
    assert rate.take("192.0.2.1", 0.0) == pytest.approx(1.0)
    assert rate.take("192.0.2.1", 0.5) == pytest.approx(0.5)
    assert rate.take("192.0.2.1", 1.0) == 0


def test_addresses_have_buckets_of_their_own() -> None:
    rate = RequestRate(per_second=1, burst=1)
    assert rate.take("192.0.2.1", 0.0) == 0
    assert rate.take("192.0.2.1", 0.0) > 0
    assert rate.take("192.0.2.2", 0.0) == 0  # another address is not held by the first


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),  # one /64
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("::ffff:192.0.2.1", "192.0.2.1", True),  # an IPv4 address mapped
        ("192.0.2.1", "192.0.2.2", False),
    ],
)
def test_an_ipv6_address_counts_by_its_64(first: str, second: str, shared: bool) -> None:
    rate = RequestRate(per_second=1, burst=1)
    assert rate.take(first, 0.0) == 0
    assert (rate.take(second, 0.0) > 0) is shared


def test_the_table_is_bounded_the_least_recently_seen_forgotten() -> None:
    """10,000 addresses through a table of 100: it holds 100; an address seen lately keeps its
    spent bucket, one forgotten comes back with a full one."""
    rate = RequestRate(per_second=0.001, burst=1, addresses=100)
    assert rate.take("198.51.100.1", 0.0) == 0
    for i in range(10_000):
        rate.take(f"10.0.{i // 256}.{i % 256}", 1.0)
        if i % 50 == 0:
            assert rate.take("198.51.100.1", 1.0) > 0  # seen lately: still spent
    assert len(rate) == 100
    assert rate.take("10.0.0.0", 2.0) == 0  # forgotten long ago: a full bucket


def test_a_trusted_proxy_that_forwarded_no_client_is_not_held() -> None:
    """Its clients are bounded by the proxy; any other address is held as usual."""
    rate = RequestRate(per_second=1, burst=1, trusted=["10.1.0.0/16"])
    assert [rate.take("10.1.2.3", 0.0) for _ in range(5)] == [0.0] * 5
    assert rate.take("192.0.2.1", 0.0) == 0
    assert rate.take("192.0.2.1", 0.0) > 0
