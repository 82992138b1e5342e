"""Which way a leased monitor goes in the alerter's batch pass (controller.alerting.batch), as a
table: only a monitor whose evaluation is nothing but its state, its lease and its posture
cursor is written by the batch."""

from datetime import UTC, datetime

import pytest

from controller.alerting.batch import Path, path, settled
from controller.alerting.rules import (
    AlertState,
    BackoffChanged,
    ConfirmationWanted,
    DeliveryObserved,
    Effect,
    IncidentClosed,
    IncidentOpened,
    Notice,
    Replayed,
    StateChanged,
)
from controller.alerting.state_store import Inputs
from controller.logins.backoff import Backoff
from controller.monitors.store import MonitorConfigError, WatchedMonitor
from controller.monitors.thresholds import Thresholds
from controller.posture.observe import CursorMove
from tests.unit.test_alert_inputs import monitor, rounds

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MOVED = CursorMove(AT, {})


def inputs(
    *, status: str = "active", windows: bool = False, held: bool = False, **state: object
) -> Inputs:
    s = AlertState(**({"state": "up", "last_round_at": AT} | state))  # type: ignore[arg-type]
    w = WatchedMonitor(monitor(status=status), rounds())
    return Inputs(w, s, Thresholds(), None, windows, held)


EFFECTS: list[Effect] = [
    StateChanged("up", "down", AT, ("DE",), "auth"),
    IncidentOpened(AT, "auth", "auth", ("DE",)),
    IncidentClosed(3, AT, "recovered"),
    Notice("down", 3),
    BackoffChanged(None, False, ()),
    ConfirmationWanted(AT, ("DE",)),
    DeliveryObserved(()),
    Replayed("up", "down"),
]

Case = tuple[str, Inputs | MonitorConfigError | None, dict[str, object], Path]
CASES: list[Case] = [
    ("routine", inputs(), {}, "batch"),
    ("posture writes nothing at all", inputs(), {"posture": CursorMove(None, {})}, "batch"),
    ("in maintenance status, nothing to tell", inputs(status="maintenance"), {}, "batch"),
    ("no state row yet", None, {}, "alone"),
    ("expired rows to store", inputs(), {"fills": True}, "alone"),
    ("a revision", inputs(), {"revised": True}, "savepoint"),
    ("held recoveries", inputs(held=True), {}, "savepoint"),
    ("maintenance windows to read", inputs(windows=True), {}, "savepoint"),
    ("an open incident", inputs(open_incident_id=3), {}, "savepoint"),
    ("never judged", inputs(last_round_at=None), {}, "savepoint"),
    ("disabled", inputs(status="disabled"), {}, "savepoint"),
    ("config unreadable", MonitorConfigError("secure: not a boolean"), {}, "savepoint"),
    ("results cut short", inputs(), {"cut_short": True}, "savepoint"),
    ("posture writes more than its cursor", inputs(), {"posture": None}, "savepoint"),
]
CASES += [(type(e).__name__, inputs(), {"effects": (e,)}, "savepoint") for e in EFFECTS]


@pytest.mark.parametrize(("why", "got", "more", "way"), CASES, ids=[c[0] for c in CASES])
def test_the_way_of_each_case(
    why: str, got: Inputs | MonitorConfigError | None, more: dict[str, object], way: Path
) -> None:
    more = dict(more)
    revised = bool(more.pop("revised", False))
    kwargs: dict[str, object] = {"posture": MOVED} | more
    assert path(got, revised, **kwargs) == way, why  # type: ignore[arg-type]


SETTLED: list[tuple[str, AlertState, Backoff | None, dict[tuple[str, str], int], bool]] = [
    ("up, nothing pending", AlertState("up", last_round_at=AT), None, {}, True),
    ("a drift streak cleared", AlertState("up", last_round_at=AT), None, {("tls", "DE"): 0}, True),
    ("down", AlertState("down", last_round_at=AT), None, {}, False),
    ("unknown", AlertState("unknown", last_round_at=AT), None, {}, False),
    ("an incident open", AlertState("up", last_round_at=AT, open_incident_id=3), None, {}, False),
    ("login back-off", AlertState("up", last_round_at=AT), Backoff(1, AT, AT), {}, False),
    ("drift being counted", AlertState("up", last_round_at=AT), None, {("tls", "DE"): 1}, False),
]


@pytest.mark.parametrize(
    ("why", "state", "backoff", "streaks", "expected"), SETTLED, ids=[c[0] for c in SETTLED]
)
def test_which_monitors_leave_their_routine_rounds_to_their_due_time(
    why: str,
    state: AlertState,
    backoff: Backoff | None,
    streaks: dict[tuple[str, str], int],
    expected: bool,
) -> None:
    assert settled(state, backoff, streaks) is expected, why
