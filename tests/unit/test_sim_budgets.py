"""The simulation's notice budget rule (testkit/sim/budgets.py, controller/notify/budget.py), as
a table: a budget of 2 outage e-mails per organization and clock hour, bound 2 s."""

from datetime import UTC, datetime, timedelta

import pytest

from testkit.sim.budgets import SETTING, Row, judged

T = datetime(2031, 1, 31, 23, 10, tzinfo=UTC)
DROP = f"not sent: ... ({SETTING}) was used up"


def _r(org: str, status: str, at: datetime = T, late: float = 0.0, error: str | None = None) -> Row:
    done = at + timedelta(seconds=late) if status in ("sent", "dropped") else None
    return Row(org, status, at, done, error if status != "dropped" else error or DROP)


NEXT_HOUR = T + timedelta(hours=1)
CASES = [
    ("within the budget", [_r("a", "sent"), _r("a", "sent")], False),
    ("three sent in an hour", [_r("a", "sent")] * 3, True),
    ("two sent each hour", [*[_r("a", "sent")] * 2, *[_r("a", "sent", NEXT_HOUR)] * 2], False),
    ("dropped once spent", [_r("a", "sent"), _r("a", "sent"), _r("a", "dropped")], False),
    ("dropped before spent", [_r("a", "sent"), _r("a", "dropped")], True),
    ("dropped without its setting", [*[_r("a", "sent")] * 2, _r("a", "dropped", error="x")], True),
    ("another organization's spent budget", [*[_r("a", "sent")] * 2, _r("b", "sent")], False),
    ("a page delayed", [_r("b", "sent", late=30.0)], True),
    ("a page left pending", [_r("b", "pending")], True),
]


@pytest.mark.parametrize(("what", "rows", "broken"), CASES, ids=[c[0] for c in CASES])
def test_the_budget_rule(what: str, rows: list[Row], broken: bool) -> None:
    assert bool(judged(rows, 2, 2.0)) is broken, what
