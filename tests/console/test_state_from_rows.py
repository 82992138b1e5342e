"""`console.state_from_rows` (the scrape's, in Python) says what the console's SQL says of a
monitor: the alerter's state once it judged, else what its countries' latest statuses say."""

from itertools import combinations_with_replacement

import asyncpg

from controller.web.console import store as console

STATUSES = ("up", "down", "missed", "inconclusive")


async def test_the_python_rule_is_the_sql_rule(pool: asyncpg.Pool) -> None:
    rule = console._FROM_COUNTRIES.removeprefix("(SELECT ").removesuffix(
        console._COUNTRY_ROWS + ")"
    )
    assert rule.startswith("CASE") and rule.endswith("END")
    query = f"SELECT {rule} FROM unnest($1::text[]) AS s(last_status)"
    seen = set()
    async with pool.acquire() as conn:
        for n in range(4):
            for statuses in combinations_with_replacement(STATUSES, n):
                expected = await conn.fetchval(query, list(statuses))
                seen.add(expected)
                assert console.state_from_rows(None, list(statuses)) == expected, statuses
                assert console.state_from_rows("unknown", list(statuses)) == expected, statuses
                all_up = bool(statuses) and all(s == "up" for s in statuses)
                held = console.state_from_rows("down", list(statuses))
                assert held == ("recovering" if all_up else "down"), statuses
                # A paused monitor (the scrape reads it as judged `paused`) is paused.
                assert console.state_from_rows("paused", list(statuses)) == "paused"
    assert seen | {"recovering", "paused"} == set(console.STATES)
