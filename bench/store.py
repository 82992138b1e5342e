"""Store: PostgreSQL's CPU per stored result in the ingester's statements, by part.

Embedded PostgreSQL (crash-safe), MONITORS SMTP monitors checked from two countries: rounds of
one routine `up` result per monitor and country (each after two rounds that make the states'
full rows, so they are stored compact, as in a steady state; on the daily result partitions a
deployment holds, `testkit.common.steady_partitions`) go through `results.store` in
batches of BATCH (the size the scale bench's ingester takes), one transaction each, on one
connection. The CPU time of that connection's backend (/proc/PID/stat) over the rounds,
divided by the results stored, is the cost per result; the client's CPU is the encoding and
decoding around it.

The parts are measured by ablation, side by side in one run: the same rounds with one part
left out (the per-country state move, the alerter's queue marks, the login count, the hourly
rollups, the facts hash), each after a round of its own so that what it leaves out cannot make
its rows full; the parts take turns, ROUNDS rounds each, PASSES times over, so a slow moment of
the machine falls on all of them alike (the figures move by about 2 µs between runs). What a
part costs is the whole less the run without it. Then the same rounds in batches of SMALL and
of BATCH, taking turns: what a batch costs whatever its size (its transaction, its statements'
round trips and plans, anything that reads a table whole) and what each result adds, from the
two. No target: it says where the statements' time goes (bench/results/scaling-history.md,
"What is left").
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any

from controller.db.pool import Conn
from controller.ingest import alert_queue_store as alert_queue
from controller.ingest import store as results
from controller.ingest.pack_rules import packed_before
from controller.ingest.store import CheckedResult, decode_result
from shared.messages import Phases, encode
from shared.timefmt import utcnow
from testkit.common import (
    cpu_s,
    discard_logs,
    machine,
    smtp_result,
    steady_database,
)

MONITORS = 2_000
COUNTRIES = ("DE", "US")
BATCH = 140
SMALL = 20  # the batch size the per-batch cost is told apart with
ROUNDS = 2  # measured per part and pass
PASSES = 5


def _result(public_id: str, cc: str, at: datetime) -> CheckedResult:
    """What the scale bench's agents send for its SMTP responder (testkit.smtp_target)."""
    sent = smtp_result(
        public_id,
        cc,
        at,
        status="up",
        banner="220 localhost ESMTP bench",
        response_time_ms=2.5,
        phases=Phases(dns_ms=0.1, connect_ms=0.4, greeting_ms=1.0),
        address="127.0.0.1",
        capabilities=["8BITMIME", "PIPELINING", "SIZE 10240000", "SMTPUTF8"],
        logins=0,
    )
    return decode_result(encode(sent))


async def _nothing(*_: Any, **__: Any) -> None:
    return None


def _without_rollups(sql: str) -> str:
    start, end = sql.index("), roll AS ("), sql.index("), v AS (")
    return sql[:start] + sql[end:]


def _state_unmoved(sql: str) -> str:
    """The statement with the per-country states left as they are (they exist already)."""
    moved = "AND (country_state_moved(s, u::country_state_move)).moves"
    made = "FROM u WHERE u.fresh"
    assert moved in sql and made in sql
    return sql.replace(moved, f"{moved} AND false").replace(made, f"{made} AND false")


def _facts_unhashed(_: object) -> str:
    return "00000000000000000000000000000000"


@contextmanager
def _left_out(owner: object, name: str, value: object) -> Iterator[None]:
    kept = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, kept)


@contextmanager
def _statement(sql: str) -> Iterator[None]:
    """The rounds' batches (each monitor and country once, recent) take `sql` for the while."""
    key = (True, False)
    kept = results._STATEMENTS[key]
    results._STATEMENTS[key] = sql
    try:
        yield
    finally:
        results._STATEMENTS[key] = kept


PARTS: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "all": lambda: _statement(results._ONCE),
    "state move": lambda: _statement(_state_unmoved(results._ONCE)),
    "queue marks": lambda: _left_out(alert_queue, "mark", _nothing),
    "login count": lambda: _left_out(results, "_count_logins", _nothing),
    "rollups": lambda: _statement(_without_rollups(results._ONCE)),
    "facts hash": lambda: _left_out(results, "facts_of", _facts_unhashed),
}


Rounds = list[tuple[float, float, int]]  # (PostgreSQL's CPU s, the client's, results)


async def _measure() -> tuple[dict[str, Rounds], dict[int, Rounds]]:
    async with steady_database("mailprobe-bench-store-", MONITORS, list(COUNTRIES)) as (conn, ids):
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        one_round = stored_rounds(conn, backend, ids)  # one sequence of rounds for both
        return await _parts(one_round), await _sizes(one_round)


OneRound = Callable[[int], Awaitable[tuple[float, float, int]]]


def stored_rounds(conn: Conn, backend: int, ids: list[str]) -> OneRound:
    """A round of every monitor from every country, stored in batches of the size given, each
    round ten seconds after the one before: its CPU (PostgreSQL's, the client's) and its
    results. The rounds are recent, as a steady state's are: a batch holding a result old
    enough to be packed takes the ingester's other statement (`_INSERT_OLD`), which also looks
    up the packs."""
    first = packed_before(utcnow()).replace(microsecond=0) + timedelta(minutes=2)
    rounds = iter(range(10**6))

    async def one_round(batch: int) -> tuple[float, float, int]:
        at = first + timedelta(seconds=10 * next(rounds))
        if at < packed_before(utcnow()):
            raise RuntimeError(f"a round scheduled at {at} is old enough to be packed")
        rows = [_result(p, cc, at) for p in ids for cc in COUNTRIES]
        pg, client = cpu_s(backend), time.process_time()
        for start in range(0, len(rows), batch):
            async with conn.transaction():
                await results.store(conn, rows[start : start + batch], now=utcnow())
        return cpu_s(backend) - pg, time.process_time() - client, len(rows)

    return one_round


async def _parts(one_round: OneRound) -> dict[str, Rounds]:
    for _ in range(2):
        await one_round(BATCH)  # the states' full rows
    by_part: dict[str, Rounds] = {part: [] for part in PARTS}
    for _ in range(PASSES):
        for part, leave_out in PARTS.items():
            with leave_out():
                await one_round(BATCH)  # its rows' states as this part leaves them
                by_part[part] += [await one_round(BATCH) for _ in range(ROUNDS)]
    return by_part


async def _sizes(one_round: OneRound) -> dict[int, Rounds]:
    """The same rounds in batches of SMALL and of BATCH, taking turns."""
    by_size: dict[int, Rounds] = {SMALL: [], BATCH: []}
    for _ in range(PASSES):
        for size, measured in by_size.items():
            measured.append(await one_round(size))
    return by_size


def _per_result(rounds: Rounds) -> tuple[float, float]:
    """µs of PostgreSQL's and of the client's CPU per result over `rounds`."""
    stored = sum(n for _, _, n in rounds)
    pg = sum(pg for pg, _, _ in rounds)
    client = sum(client for _, client, _ in rounds)
    return 1e6 * pg / stored, 1e6 * client / stored


def run() -> bool:
    discard_logs()
    print(
        f"store ({machine()}): results.store, {MONITORS:,} monitors x {len(COUNTRIES)}"
        f" countries, routine results in batches of {BATCH}"
    )
    by_part, by_size = asyncio.run(_measure())
    rounds = by_part["all"]
    whole_pg, whole_client = _per_result(rounds)
    spread = [_per_result(rounds[i : i + ROUNDS])[0] for i in range(0, len(rounds), ROUNDS)]
    print(
        f"  all: PostgreSQL {whole_pg:5.1f} µs per stored result (passes {min(spread):.1f}"
        f"-{max(spread):.1f}; client {whole_client:4.1f} µs)"
    )
    for part, measured in by_part.items():
        if part != "all":
            pg, client = _per_result(measured)
            print(
                f"  {part:>12}: {whole_pg - pg:5.1f} µs of PostgreSQL's,"
                f" {whole_client - client:4.1f} µs of the client's"
            )
    small, large = (_per_result(by_size[size]) for size in (SMALL, BATCH))
    # µs per result = per batch / size + per result, at both sizes
    each_pg = (large[0] * BATCH - small[0] * SMALL) / (BATCH - SMALL)
    each_client = (large[1] * BATCH - small[1] * SMALL) / (BATCH - SMALL)
    print(
        f"  by batch size: {small[0]:.1f} µs per result in batches of {SMALL}, {large[0]:.1f} in"
        f" batches of {BATCH}: PostgreSQL {(small[0] - each_pg) * SMALL / 1000:.2f} ms per batch"
        f" + {each_pg:.1f} µs per result; the client"
        f" {(small[1] - each_client) * SMALL / 1000:.2f} ms per batch + {each_client:.1f} µs"
    )
    return True
