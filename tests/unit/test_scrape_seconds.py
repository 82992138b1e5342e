"""Durations in `/metrics/monitors` are seconds to the microsecond the results keep, printed
short: a bare division of milliseconds prints float noise."""

import pytest

from controller.web.console.scrape_series import _seconds


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (1.793, "0.001793"),
        (120.0, "0.12"),
        (0.001, "1e-06"),
        (0.0, "0.0"),
        (29999.999, "29.999999"),
    ],
)
def test_milliseconds_print_as_short_seconds(ms: float, text: str) -> None:
    assert str(_seconds(ms)) == text
