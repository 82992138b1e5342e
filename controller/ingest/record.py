"""Recording results: the one way into `check_results` (its rows, rollups and the per-country
states they move), for every writer.

Four kinds of result are recorded, each by its own writer, all through the results store's one
statement (controller.ingest.store, `store`), so the rules of what a row replaces and how it
moves a state hold for all of them:

- `checked`: what an agent reported (the ingester);
- `missed`: a round, or a country's part of it, that went nowhere (the scheduler: `no_agent`,
  `overdue`, `no_seal_key`, `saturated`, held logins and round-trip messages);
- `answered`: a round trip's look that waited for its monitor's round in flight and was
  answered by that round's finding, `up` without being sent (the scheduler);
- `expired`: a closed round's country that sent nothing in time (the alerter).

Nothing else in the product writes those tables but their upkeep (packing, retention), and
tests/unit/test_results_record_only.py holds that. The caller owns the transaction and gives
its clock's `now` (what the rows are stored at, and when the alerter is to look at them).
"""

from collections.abc import Sequence
from datetime import datetime

from controller.db.pool import Conn
from controller.ingest import store as results
from controller.ingest.store import CheckedResult
from controller.jobs.result_kinds import MISSED_KINDS, ResultRow

EXPIRED = "expired"


async def checked(
    conn: Conn, rows: Sequence[CheckedResult], default_countries: int, now: datetime
) -> int:
    """Record agents' results; return how many were stored (new, or replacing the
    controller's own row for their job). `default_countries`: DEFAULT_CHECK_COUNTRIES."""
    return await results.store(conn, rows, default_countries, now=now)


async def missed(
    conn: Conn, rows: Sequence[ResultRow], default_countries: int, now: datetime
) -> int:
    """Record the controller's own rows of rounds that went nowhere (status `missed`, an error
    kind of MISSED_KINDS other than `expired`); return how many were new."""
    _own(rows, MISSED_KINDS - {EXPIRED})
    return await results.store(conn, rows, default_countries, now=now)


async def answered(
    conn: Conn, rows: Sequence[ResultRow], default_countries: int, now: datetime
) -> int:
    """Record the controller's own `up` rows of looks answered by their monitor's round in
    flight (`roundtrip_sends.answer`); return how many were new."""
    _own(rows, frozenset({None}), status="up")
    return await results.store(conn, rows, default_countries, now=now)


async def expired(
    conn: Conn, rows: Sequence[ResultRow], default_countries: int, now: datetime
) -> int:
    """Record `expired` rows for the countries of closed rounds that sent nothing; return how
    many were new (an agent's result that came meanwhile stays)."""
    _own(rows, frozenset({EXPIRED}))
    return await results.store(conn, rows, default_countries, now=now)


def _own(rows: Sequence[ResultRow], kinds: frozenset[str | None], status: str = "missed") -> None:
    """A controller's row has no agent, `status` and an error kind of `kinds`: anything else
    is a caller's mistake, refused before a row is written."""
    wrong = [
        r.job_id
        for r in rows
        if r.agent_id is not None or r.status != status or r.error_kind not in kinds
    ]
    if wrong:
        raise ValueError(
            f"not the controller's own {status} rows ({sorted(map(str, kinds))}): {wrong[:5]}"
        )
