"""Each organization's hourly budget of readiness DNS queries per country: its hour, and why a
round is held.

A budget is per organization, country and clock hour (UTC), `READINESS_QUERIES_PER_HOUR`. A
round whose readiness is asked reserves QUERIES_MAX (what a round may spend at most) until its
facts arrive; then the queries its agent reported count instead. Which rounds are asked is
decided in PostgreSQL alone (the SQL function `readiness_reserve`, migration 0126, called by
`budget_store.reserve` once per pass): what is spent plus reserved never exceeds the budget,
and the hour's room goes to the monitors in turn (those waiting since the earliest hour
first), so a budget smaller than the demand holds each monitor in turn, never the same ones
every hour. A round held carries why (`ReadinessAsk.held`) and judges nothing.
"""

from datetime import datetime, timedelta
from typing import Final, Literal

from shared.timefmt import utc_hour

HOUR: Final = timedelta(hours=1)
QUERIES_PER_HOUR: Final = 10_000  # READINESS_QUERIES_PER_HOUR's default

# What `readiness_reserve` says of a round: asked, or held because the hour's budget has no
# room left (`spent`) or because the room left is kept for monitors waiting longer (`turn`).
Outcome = Literal["asked", "spent", "turn"]


def why_held(outcome: Outcome, budget: int, country: str, at: datetime) -> str | None:
    """Why a round scheduled `at` is held (None: it is asked)."""
    until = f"{utc_hour(at) + HOUR:%H:%M} UTC"
    if outcome == "asked":
        return None
    if outcome == "turn":
        return (
            f"this organization's DNS budget for readiness in {country} is kept until {until}"
            f" for its monitors waiting longer ({budget} queries an hour)"
        )
    return (
        f"this organization's DNS budget for readiness in {country} is spent until {until}"
        f" ({budget} queries an hour)"
    )
