"""The blocklists as oracles (`frame.Oracles`): each list's health per country from its RFC 5782
test entries' real answers (`watch.healths`, within twice the lists' interval), the countries
asking them through the agents' resolver, each list's name as people are told, and the
organizations whose monitors asked them; the oracle watch moves them beside the resolver's
canaries, and names no list."""

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Final

from controller.db.pool import Conn
from controller.sidechecks.blocklists import store as db
from controller.sidechecks.blocklists.rules import BlockList
from controller.sidechecks.blocklists.watch import healths
from controller.sidechecks.frame import OracleHealth

WHAT: Final = "blocklist standing"
THROUGH: Final = "blocklist standing (the lists are asked through it)"


class ListOracles:
    """The operator's `lists` (BLOCKLISTS), asked every `interval_s` (BLOCKLIST_INTERVAL_SECONDS):
    an answer is lately within twice that."""

    what = WHAT
    through = THROUGH

    def __init__(self, lists: tuple[BlockList, ...], interval_s: int) -> None:
        self._lists = lists
        self._window = timedelta(seconds=2 * interval_s)

    async def healths(self, conn: Conn, at: datetime) -> dict[tuple[str, str], OracleHealth]:
        if not self._lists:
            return {}
        since = at - self._window
        tests = {t for b in self._lists for t in b.tests}
        answers = await db.answers(conn, tests, since)
        failed = await db.failures(conn, since)
        by_list = healths(self._lists, answers, failed)
        return {key: OracleHealth(h.state, h.reason) for key, h in by_list.items()}

    async def asked_through_resolver(self, conn: Conn, at: datetime) -> Collection[str]:
        return await db.through_resolver(conn, at - self._window) if self._lists else ()

    def label(self, oracle: str) -> str | None:
        b = next((b for b in self._lists if b.zone == oracle), None)
        return f"the blocklist {b.label} ({b.zone})" if b is not None else None

    async def affected(self, conn: Conn, country: str, at: datetime) -> list[int]:
        return await db.organizations_asking(conn, country, at - self._window)
