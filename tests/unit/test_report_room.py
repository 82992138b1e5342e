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


F1, F2, F3 = "Forger 1", "Forger 2", "Forger 3"


@pytest.mark.parametrize(
    ("held", "reporter", "day", "rows", "kept", "established", "own_established", "dropped"),
    [
        # G established: a stranger's new names push out their own rows, never G's days ...
        ([(G, D[0], 8), (F1, D[6], 6), (F2, D[6], 2)], F3, D[6], 4, 16, {G}, False, [(F1, D[6])]),
        ([(G, D[0], 12), (F1, D[6], 2), (F2, D[6], 2)], F3, D[6], 4, 16, {G}, False, None),
        # ... where G, not established, would lose its day as the largest holder.
        ([(G, D[0], 8), (F1, D[6], 6), (F2, D[6], 2)], F3, D[6], 4, 16, (), False, [(G, D[0])]),
        # A stranger claiming G's name from another sender cannot drop G's older days, nor
        # make room at all: its rows would stay as G's.
        ([(G, D[0], 12), (M, D[1], 4)], G, D[6], 4, 16, {G}, False, None),
        ([(G, D[0], 4), (F1, D[6], 12)], G, D[6], 4, 16, {G}, False, None),
        ([(G, D[0], 4), (F1, D[6], 12)], G, D[6], 4, 16, {G}, True, [(F1, D[6])]),
        ([(G, D[0], 12), (M, D[1], 4)], G, D[6], 4, 16, (), False, [(G, D[0])]),
        # G's own established sender may: its oldest day goes for its newer one.
        ([(G, D[0], 6), (G, D[1], 6), (M, D[1], 4)], G, D[6], 4, 16, {G}, True, [(G, D[0])]),
        # G's report drops others above their share first (the largest first).
        ([(G, D[0], 6), (F1, D[6], 12)], G, D[6], 4, 16, {G}, True, [(F1, D[6])]),
        # Two established reporters keep each other's days; a newcomer fits in what is left.
        ([(G, D[0], 8), (M, D[1], 8)], F1, D[6], 1, 16, {G, M}, False, None),
    ],
)
def test_an_established_reporters_days_are_kept_until_their_own_age(
    held: list[tuple[str, date, int]],
    reporter: str,
    day: date,
    rows: int,
    kept: int,
    established: set[str],
    own_established: bool,
    dropped: list[tuple[str, date]] | None,
) -> None:
    assert rows_to_drop(held, reporter, day, rows, kept, established, own_established) == dropped
