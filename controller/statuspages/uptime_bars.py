"""Up/down history bars, as the status pages and a monitor's console page draw them: one bar per
period (an hour or a UTC day) from its time up and down, coloured by the share of time up. A
monitor's console page times it by its countries' results (SQL `uptime_ms`: each state lasts
from its result to the next; time after a missed round counts neither way); a public status
page by the monitor's incidents (SQL `public_uptime_days`)."""

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import TypedDict

UP_AT = 99.9  # % up from which a bar is green
WARN_AT = 95.0  # % up from which it is amber, below red


def level(share: float | None) -> str:
    """`none` (no round ran), `up`, `warn` or `down`."""
    if share is None:
        return "none"
    return "up" if share >= UP_AT else "warn" if share >= WARN_AT else "down"


class Bar(TypedDict):
    """One period's bar (`day`: its label), as the pages' JSON and templates read it."""

    day: str
    share: float | None  # % up among up and down, 2 decimals; None: no round counted
    level: str  # `level(share)`
    up: int  # ms up
    down: int  # ms down


def _bar(label: str, up: int, down: int) -> Bar:
    share = round(100 * up / (up + down), 2) if up + down else None
    return {"day": label, "share": share, "level": level(share), "up": up, "down": down}


def daily(days: Mapping[date, tuple[int, int]], today: date, n: int) -> list[Bar]:
    """One bar per UTC day of the `n` up to `today`, oldest first (`day`: its ISO date)."""
    out = []
    for back in range(n - 1, -1, -1):
        day = today - timedelta(days=back)
        out.append(_bar(day.isoformat(), *days.get(day, (0, 0))))
    return out


def covered_since(days: Mapping[date, tuple[int, int]], today: date, n: int) -> date | None:
    """The first day with time up or down when it is later than the first of the `n` days up to
    `today`: the uptime then covers only the days since (a page says "since 27 Nov", not "over
    90 days", for a monitor checked for a day); None when the whole window has data before it,
    or none at all."""
    first_of_window = today - timedelta(days=n - 1)
    counted = [d for d, (up, down) in days.items() if up + down and first_of_window <= d <= today]
    first = min(counted, default=None)
    return first if first is not None and first > first_of_window else None


def since_label(day: date) -> str:
    """`27 Nov`: the window is at most 90 days, so the day and month name it."""
    return f"{day.day} {day.strftime('%b')}"


def hourly(hours: Mapping[datetime, tuple[int, int]], this_hour: datetime, n: int) -> list[Bar]:
    """One bar per hour of the `n` up to `this_hour` (its start, UTC), oldest first (`day`: the
    hour as `2026-11-23 08:00 UTC`)."""
    out = []
    for back in range(n - 1, -1, -1):
        hour = this_hour - timedelta(hours=back)
        out.append(_bar(hour.strftime("%Y-%m-%d %H:%M UTC"), *hours.get(hour, (0, 0))))
    return out
