"""Room for a report's rows among what its domain stores (REPORT_ROWS_KEPT aggregate rows),
each reporter's share bounded, and a floor for established reporters; pure.

A reporter's rows are stored under the name a report declares (its organization name, the
`reporter` of its rows). A reporter is established for a domain when reports under its name
from one sender (`controller.reports.senders`: what a stranger cannot choose freely) were
received on `ESTABLISHED_DAYS` different days. When a report would take the domain past the
bound, rows go a reporter's day at a time (its rows of one day, with their day totals), until
it fits:

- an established reporter's rows never go for another's report: they leave by age (the
  report window) or for its own newer reports, so a stranger, however many names it invents,
  cannot push out what a reporter that has sent for days sent;
- of the others, the reporter holding the most rows goes first, its oldest day first: a flood
  under one name pushes out only itself;
- the report's own reporter counts with the report's rows, and on a tie goes first: a newcomer
  never displaces an equal; an established reporter's own days go only after the others'
  rows above their share;
- another reporter loses rows only while it holds more than its share, `kept // reporters`
  (the report's own reporter counted);
- the report's own reporter loses only days before the report's (its own day and newer days
  never go for it);
- a report under an established name from another sender makes no room at all (its rows
  would be kept as the established reporter's): it is stored only in the room there is;
- otherwise the report is refused (`rows_kept_full`): it would take more than its share while
  others hold rows.
"""

from collections.abc import Collection, Sequence
from datetime import date

# Days (of receipt) on which reports under a name from one sender were received before that
# reporter is established.
ESTABLISHED_DAYS = 3


def rows_to_drop(
    held: Sequence[tuple[str, date, int]],
    reporter: str,
    day: date,
    rows: int,
    kept: int,
    established: Collection[str] = (),
    own_established: bool = False,
) -> list[tuple[str, date]] | None:
    """The (reporter, day) pairs of `held` (each with its stored rows) to drop so that a report
    of `reporter`'s with `rows` rows of `day` fits within `kept`; None when it may not.
    `established`: the names established for the domain; `own_established`: whether the
    report's own sender is the one that established `reporter`."""
    days: dict[str, list[tuple[date, int]]] = {}
    for name, d, n in held:
        days.setdefault(name, []).append((d, n))
    for own in days.values():
        own.sort()
    total = {name: sum(n for _, n in own) for name, own in days.items()}
    need = sum(total.values()) + rows - kept
    total[reporter] = total.get(reporter, 0) + rows
    share = kept // len(total)
    if need > 0 and reporter in established and not own_established:
        return None  # rows it would store as an established reporter's: only in free room
    dropped: list[tuple[str, date]] = []
    while need > 0:
        others = [name for name in total if name != reporter and name not in established]
        largest = max(others, key=lambda name: (total[name], name), default=None)
        if largest is not None and (own_established or total[largest] > total[reporter]):
            if total[largest] <= share:
                if not own_established:
                    return None
                largest = reporter
        else:
            largest = reporter
        own = days.get(largest, [])
        if largest == reporter and (not own or own[0][0] >= day):
            return None
        d, n = own.pop(0)
        dropped.append((largest, d))
        total[largest] -= n
        need -= n
    return dropped
