"""The agent's fair queueing rule (agent.fair_queue), as tables: which tenant's job starts next."""

import pytest

from agent.fair_queue import FairQueue, choose, tenant_cap


@pytest.mark.parametrize(
    ("capacity", "share", "cap"),
    [(4, 0.5, 2), (200, 0.5, 100), (5, 0.5, 2), (1, 0.5, 1), (3, 0.1, 1), (4, 1.0, 4)],
)
def test_a_tenants_cap_is_its_share_of_the_slots_rounded_down_at_least_one(
    capacity: int, share: float, cap: int
) -> None:
    """The cap of AGENT_TENANT_SLOT_SHARE: one slot at least, so every tenant can run."""
    assert tenant_cap(capacity, share) == cap


@pytest.mark.parametrize(
    ("order", "held", "chosen"),
    [
        ([], {}, None),  # nothing waits
        (["a"], {"a": 4}, "a"),  # a lone tenant may use every slot
        (["a", "b"], {}, "a"),  # round robin: the lane served longest ago first
        (["b", "a"], {"a": 1}, "b"),
        (["a", "b"], {"a": 2}, "b"),  # a at its cap waits while b is under its cap
        (["a", "b"], {"a": 3, "b": 0}, "b"),
        (["a", "b"], {"a": 1, "b": 5}, "a"),
        # all waiting tenants at their cap: the fewest-holding one, never an idle slot
        (["a", "b"], {"a": 3, "b": 2}, "b"),
        (["a", "b"], {"a": 2, "b": 2}, "a"),
        (["a", "b", "c"], {"a": 2, "b": 2}, "c"),
        # a tenant holding slots but with nothing waiting does not count
        (["a"], {"a": 2, "b": 1}, "a"),
    ],
)
def test_which_tenant_starts_next(
    order: list[str], held: dict[str, int], chosen: str | None
) -> None:
    """Cap 2 (4 slots, share 0.5). First come first served let one organization's long
    checks hold every slot while another's jobs waited behind them until they expired."""
    assert choose(order, held, cap=2) == chosen


def test_lanes_are_served_in_turn_each_in_arrival_order() -> None:
    """A flood of one tenant's jobs, then another's: they alternate, each in its own order,
    and a tenant at its cap gives way while the other has jobs."""
    queue: FairQueue[str] = FairQueue(capacity=4, share=0.5)
    for n in range(4):
        queue.push("flood", f"f{n}")
    queue.push("other", "o0")
    queue.push("other", "o1")
    held: dict[str, int] = {}
    started = []
    while (picked := queue.pop(held)) is not None:
        tenant, item = picked
        held[tenant] = held.get(tenant, 0) + 1
        started.append(item)
    assert started == ["f0", "o0", "f1", "o1", "f2", "f3"]
    assert len(queue) == 0


def test_a_tenant_at_its_cap_gives_way_to_a_newcomer() -> None:
    """The flood holds 3 of 4 slots and has jobs waiting; a job of another tenant arrives
    last yet starts first."""
    queue: FairQueue[str] = FairQueue(capacity=4, share=0.5)
    queue.push("flood", "f3")
    queue.push("flood", "f4")
    queue.push("other", "o0")
    assert queue.pop({"flood": 3}) == ("other", "o0")
    assert queue.counts() == {"flood": 2}
    assert queue.pop({"flood": 3, "other": 1}) == ("flood", "f3")


def test_clear_returns_every_waiting_job() -> None:
    queue: FairQueue[int] = FairQueue(capacity=2, share=0.5)
    for n in range(3):
        queue.push(str(n % 2), n)
    assert sorted(queue.clear()) == [0, 1, 2]
    assert len(queue) == 0 and list(queue.lanes()) == []


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        FairQueue(capacity=4, share=share)


@pytest.mark.parametrize(
    ("order", "held", "used", "chosen"),
    [
        # one slot: nobody holds one when it frees; the one that held it least lately first
        (["greedy", "quiet"], {}, {"greedy": 90.0, "quiet": 0.5}, "quiet"),
        (["quiet", "greedy"], {}, {"greedy": 90.0, "quiet": 0.5}, "quiet"),
        # fewest held before the lightest
        (["a", "b"], {"b": 1}, {"a": 50.0, "b": 0.1}, "a"),
        # equals: round robin
        (["b", "a"], {}, {"a": 1.0, "b": 1.0}, "b"),
        # no cap left to the others (share 1, cap 2 of 2): the lighter one takes the free slot
        (["greedy", "quiet"], {"greedy": 1}, {"greedy": 90.0}, "quiet"),
    ],
)
def test_the_tenant_that_held_the_slots_least_lately_goes_first(
    order: list[str], held: dict[str, int], used: dict[str, float], chosen: str
) -> None:
    """AGENT_CONCURRENCY 1 (or a share of 1): the cap cannot keep a slot for the others, and
    round robin alone gave an organization whose checks hold the slot ten times longer ten
    elevenths of it."""
    assert choose(order, held, 2, lambda t: used.get(t, 0.0)) == chosen
