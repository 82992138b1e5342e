"""The hand-off's bound (agent.handoff), as tables: which result enters, and in what order
results waiting for room enter when room comes back."""

import asyncio
from collections import deque

import pytest
from prometheus_client import CollectorRegistry, Histogram

from agent.handoff import (
    HANDOFF_MIN_BYTES,
    HANDOFF_MIN_RESULTS,
    HandOff,
    Held,
    Limits,
    admits,
    within_agent,
)
from agent.metrics import HandOffCollector, HandOffMetrics

# 4 results, 1,000 bytes; an organization at most 2 results and 500 bytes.
LIMITS = Limits(4, 1000, 0.5)


@pytest.mark.parametrize(
    ("held", "tenant", "size", "enters"),
    [
        (Held(), Held(), 10, True),
        (Held(), Held(), 5000, True),  # an empty hand-off takes any one result
        (Held(1, 10), Held(), 990, True),  # an organization's first, within the agent's bytes
        (Held(1, 10), Held(), 991, False),  # beyond the agent's bytes
        (Held(4, 40), Held(), 10, False),  # the agent's results are full
        (Held(3, 30), Held(1, 10), 10, True),
        (Held(3, 30), Held(2, 20), 10, False),  # at its share of the results: 2 of 4
        (Held(2, 420), Held(1, 400), 100, True),  # 500 bytes, its share
        (Held(2, 420), Held(1, 400), 101, False),  # beyond its share of the bytes
        (Held(1, 600), Held(1, 600), 10, False),  # one result over its share holds the rest
        (Held(3, 600), Held(), 400, True),
    ],
)
def test_which_result_enters(held: Held, tenant: Held, size: int, enters: bool) -> None:
    assert admits(LIMITS, held, tenant, size) is enters


@pytest.mark.parametrize(
    ("held", "size", "fits"),
    [
        (Held(), 5000, True),  # an empty hand-off takes any one result
        (Held(3, 600), 400, True),
        (Held(3, 600), 401, False),  # beyond the agent's bytes
        (Held(4, 40), 10, False),  # the agent's results are full
        (Held(1, 990), 10, True),  # an organization's share is not the agent's bound
    ],
)
def test_which_result_fits_the_agent_s_bounds(held: Held, size: int, fits: bool) -> None:
    assert within_agent(LIMITS, held, size) is fits


@pytest.mark.parametrize(
    ("capacity", "limits", "tenant_results"),
    [
        (200, Limits(400, HANDOFF_MIN_BYTES), 200),
        (500, Limits(1000, HANDOFF_MIN_BYTES), 500),
        (4, Limits(HANDOFF_MIN_RESULTS, HANDOFF_MIN_BYTES), 25),
        (1, Limits(HANDOFF_MIN_RESULTS, HANDOFF_MIN_BYTES), 25),
        (10_000, Limits(20_000, 20_000 * 8 * 1024), 10_000),
    ],
)
def test_an_organization_alone_has_as_many_places_as_the_agent_has_slots(
    capacity: int, limits: Limits, tenant_results: int
) -> None:
    """Twice the concurrency, half to one organization at most: alone, it is held back no
    more than when a check kept its slot until its store."""
    assert Limits.for_agent(capacity) == limits
    assert limits.tenant_results == tenant_results
    assert limits.tenant_bytes == limits.bytes // 2


async def test_results_waiting_for_room_enter_as_room_comes_back_each_organization_in_order() -> (
    None
):
    """a holds its 2 of 4, b 1: a's third waits; b's second and third and c's first fill the
    rest, c's second waits. When b's first leaves, c's second (the first to fit) enters before
    a's, which still waits for one of a's own to leave; an organization's results never pass
    each other."""
    handoff = HandOff(LIMITS)
    for tenant in ("a", "a", "b"):
        await handoff.enter(tenant, 10)
    entered: list[str] = []

    async def enter(tenant: str, n: int) -> None:
        await handoff.enter(tenant, 10)
        entered.append(f"{tenant}{n}")

    waiters = [
        asyncio.create_task(enter(tenant, n))
        for tenant, n in (("a", 3), ("b", 2), ("c", 1), ("c", 2))
    ]
    await asyncio.sleep(0)
    assert entered == ["b2"]
    assert handoff.waiting == 3  # a3, c1, c2: the hand-off is full
    handoff.leave("b", 10)
    await asyncio.sleep(0)
    assert entered == ["b2", "c1"]
    handoff.leave("b", 10)
    await asyncio.sleep(0)
    assert entered == ["b2", "c1", "c2"]
    handoff.leave("a", 10)
    await asyncio.sleep(0)
    assert entered == ["b2", "c1", "c2", "a3"]
    await asyncio.gather(*waiters)
    assert handoff.held == Held(4, 40)
    assert {t: h.results for t, h in handoff.held_by_tenant().items()} == {"a": 2, "c": 2}


@pytest.mark.parametrize("room_first", [False, True])
async def test_a_result_cancelled_while_waiting_leaves_no_count_behind(room_first: bool) -> None:
    """Cancelled while waiting (a stopping agent), before or after room came for it: it holds
    nothing of the hand-off, nor of its metrics; its wait is counted once."""
    registry = CollectorRegistry()
    handoff = HandOff(Limits(1, 1000, 1.0), _metrics(registry))
    await handoff.enter("a", 10)
    waiter = asyncio.create_task(handoff.enter("b", 10))
    await asyncio.sleep(0)
    assert _values(registry) == (1, 10, 1, 1, 0)
    if room_first:
        handoff.leave("a", 10)
        waiter.cancel()
    else:
        waiter.cancel()
        handoff.leave("a", 10)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (handoff.held, handoff.waiting, handoff.held_by_tenant()) == (Held(), 0, {})
    entered = 2 if room_first else 1  # b's entered as it was cancelled, and left
    assert _values(registry) == (0, 0, entered, 0, 1)


async def test_the_metrics_follow_each_result_and_each_check_waiting_for_room() -> None:
    """Counted by the test, step by step: results and bytes held, results entered, checks
    waiting for room now and those whose wait ended; the bounds as given."""
    registry = CollectorRegistry()
    handoff = HandOff(LIMITS, _metrics(registry))
    assert (_sample(registry, "max_results"), _sample(registry, "max_bytes")) == (4, 1000)
    for tenant, size in (("a", 100), ("a", 200), ("b", 300)):
        await handoff.enter(tenant, size)
    assert _values(registry) == (3, 600, 3, 0, 0)
    waiters = [asyncio.create_task(handoff.enter("a", 50)) for _ in range(3)]  # a at its 2
    await asyncio.sleep(0)
    assert _values(registry) == (3, 600, 3, 3, 0)
    handoff.leave("a", 100)
    await asyncio.sleep(0)
    assert _values(registry) == (3, 550, 4, 2, 1)
    handoff.leave("b", 300)
    handoff.leave("a", 200)
    await asyncio.sleep(0)
    assert _values(registry) == (2, 100, 5, 1, 2)
    handoff.leave("a", 50)
    await asyncio.gather(*waiters)
    assert _values(registry) == (2, 100, 6, 0, 3)
    for _ in range(2):
        handoff.leave("a", 50)
    assert _values(registry) == (0, 0, 6, 0, 3)


async def test_waited_counts_from_the_first_check_waiting_and_is_zero_when_none_waits() -> None:
    loop = asyncio.get_running_loop()
    handoff = HandOff(Limits(1, 1000, 1.0))
    now = loop.time()
    assert handoff.waited_s(now + 100) == 0
    await handoff.enter("a", 10)
    first = asyncio.create_task(handoff.enter("a", 10))
    await asyncio.sleep(0)
    began = loop.time()
    second = asyncio.create_task(handoff.enter("a", 10))  # the same wait
    await asyncio.sleep(0)
    assert now <= began - handoff.waited_s(began) <= began  # since the first one's
    assert handoff.waited_s(began + 100) >= 100
    handoff.leave("a", 10)
    await first
    assert handoff.waited_s(began + 100) >= 100  # the second still waits
    handoff.leave("a", 10)
    await second
    assert handoff.waited_s(began + 100) == 0


class Clock:
    """The hand-off's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# Events on a hand-off of one result: ("enter", t) a result enters or begins waiting at t;
# ("stored", t) / ("given up", t) the oldest result in it leaves at t, stored or not; then how
# long `waited_s` says checks have waited with no result stored, at the last event's time.
@pytest.mark.parametrize(
    ("events", "waited"),
    [
        ([("enter", 0)], 0),  # nobody waits
        ([("enter", 0), ("enter", 1)], 0),  # the wait just began
        ([("enter", 0), ("enter", 1), ("enter", 5)], 4),  # since the first waiting check
        # A store lets the first waiting check in; the one still waiting has waited since then.
        ([("enter", 0), ("enter", 1), ("enter", 2), ("stored", 30)], 0),
        # A busy, healthy agent: brief waits, each ended by a store, never add up.
        (
            [
                ("enter", 0),
                *((e, 3 * n + d) for n in range(20) for e, d in (("enter", 1), ("stored", 2))),
                ("enter", 61),
            ],
            0,
        ),
        # RESULTS timing out: results given up let the waiting checks in without any store,
        # and the checks that wait again afterwards have waited since the first one.
        (
            [
                *(("enter", 0), ("enter", 1), ("given up", 6), ("enter", 30), ("given up", 36)),
                *(("enter", 70), ("enter", 71)),
            ],
            70,
        ),
        # ... until a result is stored.
        (
            [
                *(("enter", 0), ("enter", 1), ("given up", 6), ("enter", 30), ("stored", 36)),
                *(("enter", 70), ("enter", 71)),
            ],
            1,
        ),
    ],
)
async def test_how_long_checks_have_waited_with_no_result_stored(
    events: list[tuple[str, int]], waited: float
) -> None:
    clock = Clock()
    handoff = HandOff(Limits(1, 1000, 1.0), clock=clock)
    entering: deque[asyncio.Task[None]] = deque()
    for event, at in events:
        clock.now = float(at)
        if event == "enter":
            entering.append(asyncio.create_task(handoff.enter("a", 10)))
        else:
            await entering.popleft()  # the oldest result entered before it leaves
            handoff.leave("a", 10, stored=event == "stored")
        await asyncio.sleep(0)
    assert handoff.waited_s(clock.now) == waited
    while entering:
        await entering.popleft()
        handoff.leave("a", 10)


def _metrics(registry: CollectorRegistry) -> HandOffMetrics:
    """The agent's series of one country, in a registry of the test's own."""
    collector = HandOffCollector()
    registry.register(collector)
    wait = Histogram("mailprobe_agent_handoff_wait_seconds", "", ["country"], registry=registry)
    return HandOffMetrics("XX", wait.labels("XX"), collector)


def _sample(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(f"mailprobe_agent_handoff_{name}", {"country": "XX"})
    assert value is not None, name
    return value


def _values(registry: CollectorRegistry) -> tuple[float, ...]:
    """(results held, bytes held, results entered, checks waiting, waits ended)."""
    names = ("results", "bytes", "entered_total", "waiting", "wait_seconds_count")
    return tuple(_sample(registry, name) for name in names)


async def test_a_large_result_waiting_for_the_agent_s_bytes_is_not_passed_for_ever() -> None:
    """b and c keep the hand-off's bytes near full with results of 100 bytes (each at most its
    share, 500), a's one of 400 waits for room: as theirs are stored one by one, their next
    ones (smaller, fitting sooner) must not take the room a's is waiting for, or it waits as
    long as they go on. Room that comes back goes to the results waiting longest first."""
    handoff = HandOff(Limits(100, 1000, 0.5))
    for tenant in ("b", "c") * 4:
        await handoff.enter(tenant, 100)  # 800 bytes held
    large = asyncio.create_task(handoff.enter("a", 400))
    await asyncio.sleep(0)
    assert handoff.waiting == 1
    held = deque(("b", "c") * 4)  # in the order they are stored
    coming: list[tuple[str, asyncio.Task[None]]] = []
    stored = 0
    while not large.done() and stored < 100:
        tenant = held.popleft()
        handoff.leave(tenant, 100)
        stored += 1
        coming.append((tenant, asyncio.create_task(handoff.enter(tenant, 100))))  # its next
        await asyncio.sleep(0)
        for entered in [c for c in coming if c[1].done()]:
            coming.remove(entered)
            held.append(entered[0])
    assert large.done(), f"a's result still waits after {stored} of b's and c's were stored"
    assert stored == 2, stored  # 600 bytes held by then: a's 400 fit
    handoff.leave("a", 400)  # the room goes to b's and c's waiting since, in order
    await asyncio.gather(*(task for _, task in coming))
    assert handoff.held == Held(8, 800)
