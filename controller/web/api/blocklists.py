"""`GET /api/blocklists`: the lists the operator's `BLOCKLISTS` asks and each one's health in
every country that asked it lately (RFC 5782 test entries, controller/reputation/rules.py)."""

from datetime import timedelta

import msgspec
from litestar import get

from controller.reputation import store as db
from controller.reputation.rules import lists_setting
from controller.reputation.watch import healths
from controller.web.services import PoolDep, SettingsDep
from shared.timefmt import iso_ms, utcnow


class ListHealthOut(msgspec.Struct, rename="camel"):
    country: str
    state: str  # healthy, unhealthy, unknown
    reason: str
    checked_at: str | None  # when its test entries were last answered there


class BlocklistOut(msgspec.Struct, rename="camel"):
    zone: str
    kind: str  # ip or domain
    label: str
    severity: str  # of its listings: critical (a major list) or warning
    delisting: str  # its delisting page (`{name}`: the listed name)
    test_entries: list[str]  # RFC 5782: listed, never listed
    countries: list[ListHealthOut]


class BlocklistsOut(msgspec.Struct, rename="camel"):
    enabled: bool  # BLOCKLISTS is set
    interval_seconds: int
    hold_seconds: int
    lists: list[BlocklistOut]


@get("/api/blocklists", tags=["blocklists"], summary="The blocklists asked and their health")
async def list_blocklists(pool: PoolDep, settings: SettingsDep) -> BlocklistsOut:
    lists = lists_setting(settings.blocklists)
    interval = settings.blocklist_interval_seconds
    since = utcnow() - timedelta(seconds=2 * interval)
    tests = {t for b in lists for t in b.tests}
    async with pool.acquire() as conn:
        answers = await db.answers(conn, tests, since) if lists else []
    health = healths(lists, answers)
    checked: dict[tuple[str, str], str] = {}
    for a in answers:
        key = (a.zone, a.country)
        checked[key] = max(checked.get(key, ""), iso_ms(a.answered_at))
    out = []
    for b in lists:
        countries = [
            ListHealthOut(cc, h.state, h.reason, checked.get((zone, cc)))
            for (zone, cc), h in sorted(health.items())
            if zone == b.zone
        ]
        severity = "critical" if b.major else "warning"
        out.append(
            BlocklistOut(b.zone, b.kind, b.label, severity, b.delist, list(b.tests), countries)
        )
    return BlocklistsOut(bool(lists), interval, settings.blocklist_hold_seconds, out)
