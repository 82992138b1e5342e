"""The simulation's maintenance-window rule (testkit/sim/windows.py, docs/alerts.md), as a table:
a window from 1000 to 2000 over `m`, slack 100."""

import pytest

from testkit.campaigns.verdict_truth import Incident, Notice
from testkit.sim.windows import judged

WINDOWS = {"m": [(1000.0, 2000.0)]}


def _inc(opened: float, ended: float | None) -> Incident:
    return Incident(1, "m", opened - 30, opened, ended, flow=7)


def _n(kind: str, at: float) -> Notice:
    return Notice("m", 1, kind, at, flow=7)


CASES = [
    # (what, incident, notices, broken)
    ("opened inside, open at the end: one down after", _inc(1200, None), [_n("down", 2030)], False),
    ("opened inside, open at the end: none", _inc(1200, None), [], True),
    ("opened inside, open at the end: two downs", _inc(1200, 2500), [_n("down", 2030)] * 2, True),
    ("a down queued inside", _inc(1200, None), [_n("down", 1300), _n("down", 2030)], True),
    ("opened and over inside: nothing", _inc(1200, 1500), [], False),
    ("opened and over inside: told after", _inc(1200, 1500), [_n("down", 2030)], True),
    ("over near the end: not judged", _inc(1200, 1950), [], False),
    (
        "told before, over inside: one recovery after",
        _inc(800, 1500),
        [_n("down", 820), _n("recovered", 2030)],
        False,
    ),
    ("told before, over inside: no recovery", _inc(800, 1500), [_n("down", 820)], True),
    (
        "told before, recovered inside",
        _inc(800, 1500),
        [_n("down", 820), _n("recovered", 1600)],
        True,
    ),
    ("never told, over inside: nothing", _inc(990, 1500), [], False),
    ("outside the window: not this rule's", _inc(2500, 3000), [_n("down", 2510)], False),
]


@pytest.mark.parametrize(
    ("what", "incident", "notices", "broken"), CASES, ids=[c[0] for c in CASES]
)
def test_the_window_rule(
    what: str, incident: Incident, notices: list[Notice], broken: bool
) -> None:
    assert bool(judged(WINDOWS, [incident], notices, 100.0)) is broken, what
