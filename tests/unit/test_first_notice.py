"""When a flow incident's first notice goes before its group wait is over
(`controller.alerting.flows.first_now`): as soon as the other monitors on its hosts are judged."""

from datetime import UTC, datetime, timedelta

import pytest

from controller.alerting import flows

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("notified", "due_at", "unsettled", "expected", "why"),
    [
        (False, LATER, 0, True, "every sibling judged: the first notice goes now"),
        (False, LATER, 1, False, "a sibling still being checked: wait (at most the group wait)"),
        (False, T0, 0, False, "due already: the due pass sends it"),
        (False, T0 - timedelta(seconds=1), 0, False, "past due: the due pass sends it"),
        (False, None, 0, False, "no notice wanted (held for maintenance)"),
        (True, LATER, 0, False, "a change waits its group interval"),
    ],
)
def test_the_first_notice_goes_once_the_hosts_monitors_are_judged(
    notified: bool, due_at: datetime | None, unsettled: int, expected: bool, why: str
) -> None:
    got = flows.first_now(notified=notified, due_at=due_at, now=T0, unsettled=unsettled)
    assert got is expected, why
