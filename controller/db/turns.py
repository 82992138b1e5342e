"""Work that one replica at a time does: a pass that finds another replica's pass under way
skips its turn instead of repeating the work (PostgreSQL session advisory locks)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from controller.db.pool import Conn

# Keys shared by every replica; distinct from the migrator's and the events publisher's.
HOUSEKEEPING = 0x6D61696C686F7573  # "mailhous"
PARTITIONS = 0x6D61696C70617274  # "mailpart"
REPORTS = 0x6D61696C72707274  # "mailrprt"
REPORT_MAILBOXES = 0x6D61696C72626F78  # "mailrbox"


@asynccontextmanager
async def turn(conn: Conn, key: int) -> AsyncIterator[bool]:
    """Whether this connection holds `key` (False: another replica's pass is under way);
    released at exit. A session lock, so the pass's statements may each commit on their own."""
    held: bool = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
    try:
        yield held
    finally:
        if held:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
