"""Closing an incident for lack of data: pure rules, no I/O.

A missed round (no country checked: `no_agent`, `expired`, `inconclusive`, `login_capped`, …)
neither fails nor passes, so it never completes a recovery. An open incident whose rounds have
all been missed for at least `ROUNDS` rounds in a row *and* `INCIDENT_NO_DATA_CLOSE_MINUTES`
(from the first missed round to the latest) is closed as **no data**: it ends at the first
missed round (the last time it was known to be down), its end reason says why no result could
be had, the monitor's state is `missed` (never `up`), and those told of the outage are told it
was closed for lack of data, not recovered.

A round whose only countries without a result were held on purpose after rejected credentials
(`auth_backoff`) is no missing data: the rejection is what is known, and the back-off tries
again at most `LOGIN_BACKOFF_MAX_MINUTES` later. So is a round trip's round held by its
delivery back-off (`delivery_backoff`): its messages not being delivered is what is known, the
back-off sends again within the hour, and where the agents can, the round looked in the
mailbox and found none of them arrived (controller.roundtrips.rules). Such a round neither
extends nor breaks a run of missed rounds. Any round with a verdict (failing or passing) ends
the run.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from controller.logins.backoff import HELD
from controller.roundtrips.rules import BACKED_OFF
from shared.timefmt import iso_ms

ROUNDS = 3  # at least this many missed rounds in a row, however short the interval
# Holds that are what is known, not missing data (the login and the delivery back-offs).
KNOWN_HOLDS = frozenset({HELD, BACKED_OFF})
REASON = "no data"  # an incident's end_reason starts with it when closed for lack of data

Kind = Literal["data", "no_data", "held"]


def kind(verdict: str, missed_kinds: Sequence[str | None], held_kinds: Sequence[str]) -> Kind:
    """What a judged round says about the data: `data` (a verdict), `no_data` (missed, some
    country for a reason other than a back-off), or `held` (missed only because logins were
    held back after rejected credentials, or a round trip's messages after rounds not
    delivered: `KNOWN_HOLDS`)."""
    if verdict != "missed":
        return "data"
    if not missed_kinds and held_kinds and all(k in KNOWN_HOLDS for k in held_kinds):
        return "held"
    return "no_data"


@dataclass(frozen=True, slots=True)
class Run:
    """The run of missed rounds so far: how many and the first one's scheduled time."""

    rounds: int = 0
    since: datetime | None = None

    def after(self, k: Kind, at: datetime) -> "Run":
        if k == "data":
            return Run()
        if k == "held":
            return self
        return Run(self.rounds + 1, self.since or at)


def closes(run: Run, at: datetime, after: timedelta | None) -> bool:
    """Whether an open incident closes for lack of data once the round at `at` made `run`:
    `ROUNDS` missed rounds and `after` from the first to this one; `after` None: never."""
    if after is None or run.since is None:
        return False
    return run.rounds >= ROUNDS and at - run.since >= after


def reason(since: datetime, rounds: int, why: str) -> str:
    """The end reason of an incident closed for lack of data."""
    return (
        f"{REASON}: no result could be had since {iso_ms(since)} ({rounds} rounds missed);"
        f" not known to have recovered. {why}".rstrip()
    )


def closed_for_lack_of_data(end_reason: str | None) -> bool:
    """Whether an incident's `end_reason` says it was closed for lack of data."""
    return bool(end_reason) and str(end_reason).startswith(REASON + ":")
