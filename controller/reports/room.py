"""Room for a report's rows among what its domain stores (REPORT_ROWS_KEPT aggregate rows),
each reporter's share bounded; pure.

A reporter is the name a report declares (its organization name, the `reporter` of its rows).
When a report would take the domain past the bound, rows go a reporter's day at a time (its
rows of one day, with their day totals), until it fits:

- the reporter holding the most rows goes first, its oldest day first: a flood under one name
  pushes out only itself;
- the report's own reporter counts with the report's rows, and on a tie goes first: a newcomer
  never displaces an equal;
- another reporter loses rows only while it holds more than its share, `kept // reporters`
  (the report's own reporter counted);
- the report's own reporter loses only days before the report's (its own day and newer days
  never go for it);
- otherwise the report is refused (`rows_kept_full`): it would take more than its share while
  others hold rows.
"""

from collections.abc import Sequence
from datetime import date


def rows_to_drop(
    held: Sequence[tuple[str, date, int]], reporter: str, day: date, rows: int, kept: int
) -> list[tuple[str, date]] | None:
    """The (reporter, day) pairs of `held` (each with its stored rows) to drop so that a report
    of `reporter`'s with `rows` rows of `day` fits within `kept`; None when it may not."""
    days: dict[str, list[tuple[date, int]]] = {}
    for name, d, n in held:
        days.setdefault(name, []).append((d, n))
    for own in days.values():
        own.sort()
    total = {name: sum(n for _, n in own) for name, own in days.items()}
    need = sum(total.values()) + rows - kept
    total[reporter] = total.get(reporter, 0) + rows
    share = kept // len(total)
    dropped: list[tuple[str, date]] = []
    while need > 0:
        largest = max(total, key=lambda name: (total[name], name == reporter, name))
        own = days.get(largest, [])
        if largest == reporter:
            if not own or own[0][0] >= day:
                return None
        elif total[largest] <= share:
            return None
        d, n = own.pop(0)
        dropped.append((largest, d))
        total[largest] -= n
        need -= n
    return dropped
