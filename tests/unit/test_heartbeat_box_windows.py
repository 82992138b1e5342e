"""How an IMAP folder is searched for a heartbeat's mail (agent.probers.heartbeat_box), as
tables: the windows of sequence numbers, newest first, each at most WINDOW; the message count a
SELECT answer gives; and a window's SEARCH answer staying within the session's line bound."""

import pytest

from agent.probers.heartbeat_box import WINDOW, exists_of, windows
from agent.probers.imap import MAILBOX_BOUNDS


@pytest.mark.parametrize(
    ("exists", "expected"),
    [
        (0, []),
        (1, [(1, 1)]),
        (WINDOW, [(1, WINDOW)]),
        (WINDOW + 1, [(2, WINDOW + 1), (1, 1)]),
        (14_000, [(9905, 14_000), (5809, 9904), (1713, 5808), (1, 1712)]),
    ],
)
def test_windows_cover_the_folder_newest_first(
    exists: int, expected: list[tuple[int, int]]
) -> None:
    got = list(windows(exists))
    assert got == expected
    assert sum(hi - lo + 1 for lo, hi in got) == exists
    assert all(hi - lo + 1 <= WINDOW for lo, hi in got)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"FLAGS (\\Seen)", b"172 EXISTS", b"1 RECENT", b"SELECT completed"], 172),
        ([b"0 EXISTS", b"OK [UIDNEXT 1]"], 0),
        ([b"OK [UIDVALIDITY 3857529045]", b"SELECT completed"], None),
        ([bytearray(b"5 EXISTS"), b"EXISTS 5"], None),  # a literal; not the answer's shape
        ([b"* 9 EXISTS"], None),  # aioimaplib hands lines over without their `* `
    ],
)
def test_the_message_count_of_a_select_answer(
    lines: list[bytes | bytearray], expected: int | None
) -> None:
    assert exists_of(lines) == expected


def test_a_servers_huge_message_count_costs_only_the_windows_walked() -> None:
    """A hostile SELECT answer's count (far past IMAP's 32-bit numbers) makes no list of its
    windows: the first comes at once."""
    walk = windows(10**15)
    assert next(walk) == (10**15 - WINDOW + 1, 10**15)
    assert next(walk) == (10**15 - 2 * WINDOW + 1, 10**15 - WINDOW)


def test_a_window_of_the_largest_uids_fits_one_answer_line() -> None:
    line = b"SEARCH " + b" ".join(b"%d" % (2**32 - 1 - n) for n in range(WINDOW))
    assert len(line) < MAILBOX_BOUNDS.line_max
