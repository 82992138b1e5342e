"""Room for a report's rows in its domain's stored rows, each reporter's share bounded
(controller/reports/room.py), as a table."""

from datetime import date

import pytest

from controller.reports.room import rows_to_drop

D = [date(2026, 11, n) for n in range(1, 8)]
G, M, F = "Google LLC", "Microsoft", "Forger"


@pytest.mark.parametrize(
    ("held", "reporter", "day", "rows", "kept", "dropped"),
    [
        ([(G, D[0], 5), (M, D[1], 5)], G, D[3], 5, 20, []),  # fits: nothing goes
        # A stranger's report of today past its share: refused, the genuine days stay.
        ([(G, D[0], 4), (M, D[1], 4)], F, D[6], 18, 20, None),
        # The stranger holding the most loses its own days, whatever their day.
        ([(G, D[0], 4), (M, D[1], 4), (F, D[6], 12)], G, D[5], 4, 20, [(F, D[6])]),
        ([(F, D[5], 6), (F, D[6], 6), (G, D[0], 4)], G, D[4], 6, 16, [(F, D[5])]),  # oldest
        # The flooder itself is the largest: only its own older days go, never others'.
        ([(G, D[0], 4), (F, D[5], 8)], F, D[6], 8, 16, [(F, D[5])]),
        ([(G, D[0], 4), (F, D[6], 12)], F, D[6], 4, 16, None),  # its own day never goes
        ([(G, D[0], 4), (F, D[6], 12)], F, D[5], 4, 16, None),  # nor a newer one
        # A tie goes against the report's own reporter (a newcomer never displaces an equal).
        ([(F, D[0], 20)], M, D[1], 20, 20, None),
        # Others within their share keep their rows.
        ([(G, D[0], 5), (M, D[1], 5)], F, D[6], 5, 10, None),
        # One reporter alone: its oldest days before the report's go, as before.
        ([(G, D[1], 5), (G, D[0], 5)], G, D[3], 3, 10, [(G, D[0])]),
        ([(G, D[0], 5), (G, D[1], 5)], G, D[3], 11, 15, [(G, D[0]), (G, D[1])]),
        ([(G, D[0], 5), (G, D[1], 5)], G, D[3], 21, 20, None),
    ],
)
def test_the_reporter_holding_the_most_loses_its_oldest_days_first(
    held: list[tuple[str, date, int]],
    reporter: str,
    day: date,
    rows: int,
    kept: int,
    dropped: list[tuple[str, date]] | None,
) -> None:
    assert rows_to_drop(held, reporter, day, rows, kept) == dropped
