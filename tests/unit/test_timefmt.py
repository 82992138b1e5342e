"""Times on the wire: `iso_ms` as a table, and against `datetime.isoformat` over many instants."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.timefmt import iso_ms, parse_iso

CEST = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 1, 1, 12, 0, tzinfo=UTC), "2026-01-01T12:00:00.000Z"),
        (datetime(2026, 11, 25, 21, 5, 9, 999_999, tzinfo=UTC), "2026-11-25T21:05:09.999Z"),
        (datetime(2026, 11, 25, 21, 5, 9, 1_999, tzinfo=UTC), "2026-11-25T21:05:09.001Z"),
        (datetime(2026, 3, 29, 1, 30, 0, 250_000, tzinfo=CEST), "2026-03-28T23:30:00.250Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000Z"),
        (datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "9999-12-31T23:59:59.999Z"),
    ],
)
def test_iso_ms(value: datetime, text: str) -> None:
    assert iso_ms(value) == text


@given(st.datetimes(timezones=st.just(UTC)))
def test_iso_ms_is_isoformat_in_milliseconds(value: datetime) -> None:
    assert iso_ms(value) == value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert parse_iso(iso_ms(value)) == value.replace(microsecond=value.microsecond // 1000 * 1000)
