"""Room for a report's rows among what its domain stores (REPORT_ROWS_KEPT aggregate rows);
pure.

When a report would take the domain past the bound, the domain's oldest days older than the
report's own go, whole (their rows and their day totals), oldest first, until it fits: newer
reports always find room, and a flood of rows leaves the bound as soon as newer days come, not
when its own days leave the retention. A report whose day is itself the oldest, or which would
not fit with every older day gone, is refused (`rows_kept_full`)."""

from collections.abc import Sequence
from datetime import date


def days_to_drop(days: Sequence[tuple[date, int]], day: date, need: int) -> list[date] | None:
    """The oldest of `days` (each day with its stored rows) before `day` whose rows add up to
    `need`, oldest first; None when all of them do not."""
    dropped: list[date] = []
    freed = 0
    for d, rows in sorted(days):
        if freed >= need:
            break
        if d >= day:
            return None
        dropped.append(d)
        freed += rows
    return dropped if freed >= need else None
