"""Each organization's hourly budget of readiness DNS queries per country, pure: whether a
round's readiness is asked, and why not.

A budget is per organization, country and clock hour (UTC), `READINESS_QUERIES_PER_HOUR`. A
round whose readiness is asked reserves QUERIES_MAX (what a round may spend at most) until its
facts arrive; then the queries its agent reported count instead (`charged`). A round is asked
only while what is charged leaves room for one more round (`held`), so an organization's rounds
in a country never spend more than its budget in an hour, whatever its domains serve; those
not asked carry why (`ReadinessAsk.held`), and judge nothing. The next hour starts from
nothing: a monitor is held at most until the hour rolls.

`Ledger` is what one planning batch reads (`budget_store.load`) and takes from, so rounds
planned in one batch count against each other before any is reserved in the database. What is
reserved is decided in PostgreSQL (`budget_store.reserve`, the SQL function
`readiness_reserve`, same rule), under the hour's row lock, so the rounds of any number of
controller replicas never reserve more than the budget between them: a round the `Ledger`
asked but the database has no room for goes out held.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple

from shared.sidechecks.readiness import QUERIES_MAX, WIRE

HOUR: Final = timedelta(hours=1)
QUERIES_PER_HOUR: Final = 10_000  # READINESS_QUERIES_PER_HOUR's default
READINESS: Final = WIRE.name  # the `Planning.options` key of a batch's `Ledger`


class Spend(NamedTuple):
    """An organization's readiness rounds of one hour in one country: `asked` (each reserving
    QUERIES_MAX), `settled` (their facts arrived) and the queries those `spent`."""

    asked: int = 0
    settled: int = 0
    spent: int = 0


def charged(s: Spend) -> int:
    """What the hour's rounds count against the budget: the queries reported, and QUERIES_MAX
    for each round asked whose facts have not arrived (or never will)."""
    return s.spent + max(s.asked - s.settled, 0) * QUERIES_MAX


def hour_of(at: datetime) -> datetime:
    """The clock hour (UTC) a round scheduled `at` is counted in."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def held(s: Spend, budget: int, country: str, at: datetime) -> str | None:
    """Why a round scheduled `at` is not asked (None: it is): one more round could spend past
    the budget."""
    if charged(s) + QUERIES_MAX <= budget:
        return None
    return spent(budget, country, at)


def spent(budget: int, country: str, at: datetime) -> str:
    """Why a round scheduled `at` is held: its hour's budget is spent."""
    until = hour_of(at) + HOUR
    return (
        f"this organization's DNS budget for readiness in {country} is spent until"
        f" {until:%H:%M} UTC ({budget} queries an hour)"
    )


Key = tuple[int, str, datetime]  # organization id, country, hour


@dataclass
class Ledger:
    """The budgets as one batch of rounds is planned: `spends` as stored at its start, and the
    rounds it asked (`take`) on top."""

    budget: int
    spends: Mapping[Key, Spend] = field(default_factory=dict)
    taken: dict[Key, int] = field(default_factory=dict)

    def take(self, organization_id: int, country: str, at: datetime) -> str | None:
        """Ask a round (None), counting it, or why it is held."""
        key = (organization_id, country, hour_of(at))
        stored = self.spends.get(key, Spend())
        now = stored._replace(asked=stored.asked + self.taken.get(key, 0))
        why = held(now, self.budget, country, at)
        if why is None:
            self.taken[key] = self.taken.get(key, 0) + 1
        return why
