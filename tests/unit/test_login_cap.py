"""The login cap's pure rules, as tables."""

import pytest

from controller.logins import cap as login_cap


@pytest.mark.parametrize(
    ("legs", "countries", "interval", "burst", "need"),
    [
        (1, 3, 60, 3, 69),  # 10 rounds and their confirmations, 3 triggers, from 3 countries
        (2, 1, 60, 3, 46),  # a round trip sending as its mailbox's user: two logins a check
        (1, 1, 3600, 3, 5),  # a partial round in any window still counts as one
        (1, 2, 45, 0, 56),  # ceil(600 / 45) = 14 rounds
    ],
)
def test_monitor_need(legs: int, countries: int, interval: int, burst: int, need: int) -> None:
    """Pins: logins per window = legs x countries x (2 x rounds + trigger burst)."""
    assert login_cap.monitor_need(legs, countries, interval, burst) == need


@pytest.mark.parametrize(
    ("need", "ceiling", "cap"), [(0, 100, 1), (80, 1000, 100), (900, 1000, 1000), (69, 50, 50)]
)
def test_cap_is_the_need_with_a_quarter_more_within_the_ceiling(
    need: int, ceiling: int, cap: int
) -> None:
    """Pins: the cap follows the configuration with margin, never past the ceiling."""
    assert login_cap.cap(need, ceiling) == cap


@pytest.mark.parametrize(
    ("need", "before", "ceiling", "ok"),
    [(100, 0, 100, True), (101, 0, 100, False), (150, 200, 100, True), (150, 149, 100, False)],
)
def test_admissible(need: int, before: int, ceiling: int, ok: bool) -> None:
    """Pins: past the ceiling only a write that adds no logins is allowed."""
    assert login_cap.admissible(need, before, ceiling) is ok


@pytest.mark.parametrize(
    ("status", "kind", "logins", "auth_ms", "attempted"),
    [
        ("up", None, 2, 5.0, 2),  # the agent's count wins
        ("down", "refused", 0, None, 0),
        ("down", "refused", None, None, 0),  # older agent: a closed port attempted none
        ("up", None, None, 12.5, 1),  # older agent: a timed login
        ("down", "auth", None, None, 1),  # older agent: a rejected login
        ("missed", "expired", None, None, 0),
    ],
)
def test_attempted(
    status: str, kind: str | None, logins: int | None, auth_ms: float | None, attempted: int
) -> None:
    """Pins: logins count as attempted from what the result says, not as jobs planned."""
    assert login_cap.attempted(status, kind, logins, auth_ms) == attempted
