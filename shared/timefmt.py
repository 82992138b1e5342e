"""Times on the wire and in the API: ISO-8601 UTC with milliseconds, `2026-01-01T12:00:00.000Z`."""

from datetime import UTC, datetime

from shared.clock import WALL

# The real clock's instant (shared.clock's `WALL.now`), for tests, tools and the defaults of
# constructors they build; a process's decisions take the clock it is composed with.
utcnow = WALL.now


def utc_hour(at: datetime) -> datetime:
    """The UTC clock hour `at` falls in."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def iso_ms(value: datetime) -> str:
    """Format an aware datetime as UTC with exactly three fractional digits and a `Z`."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # %-formatting: half the CPU of isoformat(timespec=...) and a slice, once per job and result.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond // 1000,
    )


def iso_ms_or_none(value: datetime | None) -> str | None:
    return None if value is None else iso_ms(value)


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 time; a naive one is taken as UTC. Raises ValueError."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
