"""What `GET /api/fleet` and `GET /api/oracles` share: the stored operator healths
(controller.operator_health) as rows, in (name, country) order, each with the advice its owner
gives for its state."""

from collections.abc import Callable, Mapping
from typing import TypeVar

from controller.operator_health.rules import Stored
from shared.timefmt import iso_ms

Row = TypeVar("Row")


def health_rows(
    stored: Mapping[tuple[str, str], Stored],
    advice: Callable[[str, str], str],
    row: Callable[[str, str, str, str, str, str], Row],
) -> list[Row]:
    """`row(name, country, state, reason, since, advice(name, state))` for each stored health."""
    return [
        row(name, country, s.state, s.reason, iso_ms(s.since), advice(name, s.state))
        for (name, country), s in sorted(stored.items())
    ]
