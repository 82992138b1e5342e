"""Each blocklist's RFC 5782 test entries (`BlocklistZone.tests`) as the agent's resolver answered
them lately, sent beside every answer a round gets from that list, so the controller believes an
answer only when the list's test entries were right at the time (controller/sidechecks/
blocklists/rules.py `vouch`); the agent judges nothing.

One list's test entries are asked at most once per `TTL_S`: the rounds within it share the
answers (and one ask in flight), so a wave of rounds costs two queries per list, however many
names they ask; a round started after them asks again. The ask has a timeout of its own
(`TIMEOUT_S`), not any round's budget, so one organization's spent budget never cuts the answers
other rounds share; a round that cannot wait for them has them as its own `unknown`
(`BUDGET_SPENT`), as agent/dns_canary.py does for the resolver canaries.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec

from shared.sidechecks.blocklists import BlocklistAnswer, BlocklistZone
from shared.sidechecks.blocklists_bound import BUDGET_SPENT

TTL_S: Final = 60.0
# One lookup of a list at most, its test entries' and every other (agent.sidechecks.blocklists):
# a list answers in well under a second; one that never answers costs a round this much.
TIMEOUT_S: Final = 3.0
TESTS_MAX: Final = 2  # RFC 5782 section 5: one entry listed, one not

# How one name is asked of one list within a lifetime (the probe's own lookup).
Ask = Callable[[BlocklistZone, str, float], Awaitable[BlocklistAnswer]]


class ListTests:
    def __init__(self) -> None:
        self._asked: dict[
            tuple[str, tuple[str, ...]], tuple[float, asyncio.Task[list[BlocklistAnswer]]]
        ] = {}

    @staticmethod
    def names(zone: BlocklistZone) -> list[str]:
        """The zone's test entries the agent asks (at most TESTS_MAX, each once)."""
        return list(dict.fromkeys(zone.tests[:TESTS_MAX]))

    async def answers(self, zone: BlocklistZone, ask: Ask, left: float) -> list[BlocklistAnswer]:
        """The zone's test entries as answered lately, waiting at most `left` for them."""
        tests = self.names(zone)
        loop = asyncio.get_running_loop()
        now = loop.time()
        key = (zone.zone, tuple(tests))
        at, task = self._asked.get(key, (-float("inf"), None))
        if task is None or now - at > TTL_S:
            self._asked = {k: v for k, v in self._asked.items() if now - v[0] <= TTL_S}
            task = asyncio.create_task(self._ask(zone, tests, ask))
            self._asked[key] = (now, task)
        try:
            async with asyncio.timeout(max(left, 0.0)):
                found = await asyncio.shield(task)
        except TimeoutError:
            return [BlocklistAnswer(zone=zone.zone, name=t, error=BUDGET_SPENT) for t in tests]
        return [msgspec.structs.replace(a) for a in found]

    @staticmethod
    async def _ask(zone: BlocklistZone, tests: list[str], ask: Ask) -> list[BlocklistAnswer]:
        found = await asyncio.gather(
            *(ask(zone, t, TIMEOUT_S) for t in tests), return_exceptions=True
        )
        return [
            a
            if isinstance(a, BlocklistAnswer)
            else BlocklistAnswer(zone=zone.zone, name=t, error=(str(a) or type(a).__name__)[:200])
            for t, a in zip(tests, found, strict=True)
        ]
