"""The packer's rules (controller.ingest.pack_rules): which hours are closed, which days' rows'
index is rebuilt."""

from datetime import UTC, date, datetime

import pytest

from controller.ingest.pack_rules import (
    EMPTY_INDEX_BYTES,
    REBUILD_MIN_BYTES,
    ROW_INDEX_ENTRY_BYTES,
    pack_horizon,
    rows_closed_before,
    rows_index_bloated,
)

MIB = 1 << 20


@pytest.mark.parametrize(
    ("now", "horizon", "closed_before"),
    [
        (
            datetime(2026, 11, 27, 0, 29, 59, tzinfo=UTC),
            datetime(2026, 11, 26, 23),
            date(2026, 11, 26),
        ),
        (datetime(2026, 11, 27, 0, 30, tzinfo=UTC), datetime(2026, 11, 27, 0), date(2026, 11, 27)),
        (datetime(2026, 11, 27, 12, 0, tzinfo=UTC), datetime(2026, 11, 27, 11), date(2026, 11, 27)),
        (
            datetime(2026, 11, 27, 23, 59, tzinfo=UTC),
            datetime(2026, 11, 27, 23),
            date(2026, 11, 27),
        ),
    ],
)
def test_a_day_is_closed_once_its_last_hour_may_be_packed(
    now: datetime, horizon: datetime, closed_before: date
) -> None:
    assert pack_horizon(now) == horizon.replace(tzinfo=UTC)
    assert rows_closed_before(now) == closed_before


@pytest.mark.parametrize(
    ("index_bytes", "rows", "min_bytes", "bloated"),
    [
        (100 * MIB, -1, REBUILD_MIN_BYTES, False),  # never counted: left alone
        (REBUILD_MIN_BYTES, 0, REBUILD_MIN_BYTES, False),  # not above the floor
        (REBUILD_MIN_BYTES + 1, 0, REBUILD_MIN_BYTES, True),
        (100 * MIB, 0, REBUILD_MIN_BYTES, True),  # every row packed
        # the results stored whole need the index: up to twice their entries is kept
        (100 * MIB, 100 * MIB / ROW_INDEX_ENTRY_BYTES / 2, REBUILD_MIN_BYTES, False),
        (100 * MIB, 100 * MIB / ROW_INDEX_ENTRY_BYTES / 2.1, REBUILD_MIN_BYTES, True),
        # without a floor, an empty index's two pages are never worth a rebuild
        (EMPTY_INDEX_BYTES, 0, 0, False),
        (EMPTY_INDEX_BYTES + 1, 0, 0, True),
        (EMPTY_INDEX_BYTES, 3, 0, False),
    ],
)
def test_a_closed_days_rows_index_is_rebuilt_when_packing_left_it_mostly_empty(
    index_bytes: int, rows: float, min_bytes: int, bloated: bool
) -> None:
    assert rows_index_bloated(index_bytes, rows, min_bytes) is bloated
