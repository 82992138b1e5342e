"""When an hour of results is packed (controller.ingest.packer), which results the ingester
must look up in the packs before storing them, and when a day's rows' index is rebuilt."""

from datetime import date, datetime, timedelta

# An hour is packed once it ended this long ago: late results of its rounds have landed.
PACK_DELAY = timedelta(minutes=30)
# How much earlier than a packer's clock an ingester's may be (replicas, a long batch).
CLOCK_MARGIN = timedelta(minutes=10)
# The advisory lock a packer holds exclusively while it packs, and an ingester shared while it
# stores results old enough to fall in a packed hour.
PACK_LOCK = 0x7061636B  # "pack"


def pack_horizon(now: datetime) -> datetime:
    """Hours before this one (UTC) are closed: a packer may pack them."""
    return (now - PACK_DELAY).replace(minute=0, second=0, microsecond=0)


def packed_before(now: datetime) -> datetime:
    """A result scheduled before this may sit in a pack: any packer's horizon, its clock up to
    CLOCK_MARGIN ahead of `now`, is no later."""
    return now - PACK_DELAY + CLOCK_MARGIN


# The advisory lock (session) a packer holds while it rebuilds a day's rows' index.
REBUILD_LOCK = 0x72656278  # "rebx"
# An index entry of `result_rows_key` (monitor, scheduled time, country, tag) in bytes, with its
# line pointer, at the pages' fill: what a row of a day keeps in the index once it is rebuilt.
ROW_INDEX_ENTRY_BYTES = 40
# An index this much larger than its rows need (and than an empty index's two pages), and larger
# than REBUILD_MIN_BYTES, is rebuilt.
REBUILD_OVER = 2.0
EMPTY_INDEX_BYTES = 2 * 8192
REBUILD_MIN_BYTES = 1 << 20


def rows_closed_before(now: datetime) -> date:
    """Days before this one (UTC) have every hour packed: their rows left are the results
    stored whole (and late ones), their rows' index is not written much any more."""
    return pack_horizon(now).date()


def rows_index_bloated(index_bytes: int, rows: float, min_bytes: int = REBUILD_MIN_BYTES) -> bool:
    """Whether a closed day's rows' index is worth rebuilding: packing deleted most of the
    entries it grew to hold during its day (each monitor's entries are in time order, so the
    pages they leave half empty are never filled again), and it holds more than REBUILD_OVER
    times what the day's remaining `rows` need, and more than `min_bytes`. `rows` < 0: not
    counted yet (never vacuumed or analyzed), not rebuilt."""
    if rows < 0:
        return False
    need = REBUILD_OVER * rows * ROW_INDEX_ENTRY_BYTES + EMPTY_INDEX_BYTES
    return index_bytes > max(min_bytes, need)
