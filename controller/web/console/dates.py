"""The console's one way of showing a time: `2026-11-23 08:53 UTC`, in a `<time>` element whose
`datetime` (and tooltip) carries the exact instant as the API writes it.

Every template shows times through the `when` filter, whatever they come as: an aware datetime
from PostgreSQL, or an ISO-8601 string from a message (a certificate's `notAfter`, an agent's
heartbeat). What is neither shows as it is, escaped; nothing shows as "—".
"""

from datetime import UTC, datetime

from markupsafe import Markup, escape

from shared.timefmt import iso_ms, parse_iso

SHOWN = "%Y-%m-%d %H:%M UTC"
NOTHING = "—"


def shown(value: datetime | str | None) -> str:
    """The time as text in the console's format (UTC); "—" for nothing."""
    instant = _instant(value)
    if instant is None:
        return NOTHING if value in (None, "") else str(value)
    return instant.strftime(SHOWN)


def when(value: datetime | str | None) -> Markup:
    """The time as a `<time>` element in the console's format; "—" for nothing."""
    instant = _instant(value)
    if instant is None:
        return Markup(NOTHING) if value in (None, "") else escape(str(value))
    exact = iso_ms(instant)
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(
        exact, instant.strftime(SHOWN)
    )


def _instant(value: datetime | str | None) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return parse_iso(value).astimezone(UTC)
        except ValueError:
            return None
    return None
