"""When an hour of results is packed (controller.ingest.packer), and which results the ingester
must look up in the packs before storing them."""

from datetime import datetime, timedelta

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
