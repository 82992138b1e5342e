"""The outbox's fair share of its senders (controller.notify.fair_share) and a channel's breaker
(controller.notify.breaker), as tables: which due notifications take the free senders, and
when a channel's notifications wait; the settings that size them."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.notify.breaker import CLOSED, Breaker, is_open
from controller.notify.fair_share import Due, Usage, choose, org_cap
from controller.notify.outbox import ORG_SHARE, SENDERS
from controller.settings import ControllerSettings
from shared.settings import SettingsError, load

A, B, C = 1, 2, 3


def due(*rows: tuple[int, int, int | None]) -> list[Due]:
    return [Due(i, org, channel) for i, org, channel in rows]


@pytest.mark.parametrize(
    ("senders", "share", "cap"), [(10, 0.5, 5), (10, 0.25, 2), (1, 0.5, 1), (3, 0.1, 1)]
)
def test_an_organizations_cap_is_its_share_of_the_senders_at_least_one(
    senders: int, share: float, cap: int
) -> None:
    assert org_cap(senders, share) == cap


# Each case: the due rows (id, organization, channel) in each organization's order, the free
# senders, the senders each organization holds, the channels busy; the ids chosen, in order.
CASES = [
    # nothing due, or no sender free
    ([], 3, {}, (), []),
    ([(1, A, 10)], 0, {}, (), []),
    # a lone organization takes every free sender, in its own order
    ([(1, B, 10), (2, B, 11), (3, B, 12)], 3, {}, (), [1, 2, 3]),
    # two organizations alternate, whatever the order of their rows
    ([(1, B, 10), (2, B, 11), (3, B, 12), (9, A, 20)], 3, {}, (), [1, 9, 2]),
    # B holds every sender (it was alone): the next free one goes to A
    ([(1, B, 10), (9, A, 20)], 1, {B: 10}, (), [9]),
    # at its cap (5) B gives way while A waits, yet no sender idles once A has none left
    ([(1, B, 10), (2, B, 11), (9, A, 20)], 3, {B: 5, A: 4}, (), [9, 1, 2]),
    # one send at a time per channel: a second row of a busy channel waits
    ([(1, B, 10), (2, B, 10), (3, B, 11)], 3, {}, (), [1, 3]),
    ([(1, B, 10), (3, B, 11)], 2, {}, (10,), [3]),
    # e-mail and SMS rows (no channel) are not limited per channel
    ([(1, A, None), (2, A, None)], 2, {}, (), [1, 2]),
    # three organizations: the one holding fewest first
    ([(1, A, None), (2, B, None), (3, C, None)], 2, {A: 2, B: 1}, (), [3, 2]),
]


@pytest.mark.parametrize(("rows", "free", "held", "busy", "chosen"), CASES)
def test_which_notifications_take_the_free_senders(
    rows: list[tuple[int, int, int | None]],
    free: int,
    held: dict[int, int],
    busy: tuple[int, ...],
    chosen: list[int],
) -> None:
    """Cap 5 (10 senders, share 0.5). Oldest first for everyone let one organization's 100
    silent channels hold another's outage page for minutes."""
    assert [d.id for d in choose(due(*rows), free, held, cap=5, busy=busy)] == chosen


def test_the_organization_that_held_senders_least_lately_goes_first() -> None:
    """Equal holdings: the sender-seconds used lately decide (retries count), so an
    organization whose channels never answer pays for its own slow sends."""
    rows = due((1, B, 10), (2, A, 20))
    assert [d.id for d in choose(rows, 1, {}, cap=5, used={B: 100.0, A: 1.0})] == [2]
    assert [d.id for d in choose(rows, 1, {}, cap=5, used={B: 1.0, A: 100.0})] == [1]


def test_usage_is_halved_every_half_life() -> None:
    usage = Usage(half_life_s=10)
    usage.charge(B, 8.0, now=100.0)
    assert usage.of(B, 100.0) == pytest.approx(8.0)
    assert usage.of(B, 110.0) == pytest.approx(4.0)
    usage.charge(B, 2.0, now=110.0)
    assert usage.all(120.0) == {B: pytest.approx(3.0)}
    assert usage.of(A, 120.0) == 0.0


T0 = datetime(2026, 11, 28, 23, 59, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("events", "now", "open_"),
    [
        # (what happened, when): the channel's notifications wait while its breaker is open
        ([("failed", 0), ("failed", 1)], 2, []),  # two in a row: still tried
        ([("failed", 0), ("failed", 1), ("failed", 2)], 3, [7]),  # three: open for 60 s
        ([("failed", 0), ("failed", 1), ("failed", 2)], 62, []),  # then one trial
        # the trial fails: open again at once, twice as long
        ([("failed", 0), ("failed", 1), ("failed", 2), ("failed", 63)], 180, [7]),
        ([("failed", 0), ("failed", 1), ("failed", 2), ("failed", 63)], 184, []),
        # a delivery in between closes it and starts the count again
        ([("failed", 0), ("failed", 1), ("delivered", 2), ("failed", 3)], 4, []),
        ([("failed", 0), ("failed", 1), ("failed", 2), ("delivered", 62)], 63, []),
    ],
)
def test_a_channels_breaker(events: list[tuple[str, float]], now: float, open_: list[int]) -> None:
    breaker = Breaker(failures=3, open_s=60, max_open_s=900)
    state = CLOSED
    for what, at in events:
        state = breaker.failed(state, T0 + timedelta(seconds=at)) if what == "failed" else CLOSED
    assert ([7] if is_open(state, T0 + timedelta(seconds=now)) else []) == open_


def test_a_breaker_stays_open_at_most_max_open_s() -> None:
    breaker = Breaker(failures=1, open_s=60, max_open_s=900)
    state, at = CLOSED, 0.0
    for _ in range(10):
        state = breaker.failed(state, T0 + timedelta(seconds=at))
        at += 1000
    assert is_open(state, T0 + timedelta(seconds=at - 1000 + 899))
    assert not is_open(state, T0 + timedelta(seconds=at - 1000 + 901))


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NOTIFY_SENDERS": "0"}, "NOTIFY_SENDERS"),
        ({"NOTIFY_ORG_SENDER_SHARE": "0"}, "NOTIFY_ORG_SENDER_SHARE"),
        ({"NOTIFY_ORG_SENDER_SHARE": "1.5"}, "NOTIFY_ORG_SENDER_SHARE"),
    ],
)
def test_the_sender_settings_refuse_what_cannot_share_naming_the_setting(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(ControllerSettings, {"DATABASE_URL": "postgresql://u@localhost/db", **env})
    assert str(caught.value).startswith(f"setting {named}"), str(caught.value)


def test_the_sender_settings_default_to_the_workers_own() -> None:
    notify = load(ControllerSettings, {"DATABASE_URL": "postgresql://u@localhost/db"}).notify
    assert (notify.notify_senders, notify.notify_org_sender_share) == (SENDERS, ORG_SHARE)
