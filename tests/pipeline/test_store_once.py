"""A batch holding each (monitor, country) once takes the results store's statement with its
one-row forms (`_ONCE`, controller/ingest/store_once.sql): held here to the general statement
(`_INSERT`) on a table of batches. Each batch is stored for one monitor through `_ONCE` and
for another through `_INSERT`, in one transaction at one writer's clock (`now`), and every
row either leaves (raw rows, details, rollups, per-country states, the alerter's queue) must be
the same but for the monitor."""

import contextlib
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx

from controller.db.pool import Conn
from controller.ingest import store as results
from controller.ingest.store import CheckedResult
from controller.jobs.result_kinds import ResultRow
from shared.messages import CheckResult, Phases, TlsInfo, encode
from shared.timefmt import iso_ms, utcnow
from tests.api.helpers import create
from tests.conftest import Tenant
from tests.pipeline.conftest import Countries

TLS = TlsInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", cert_not_after="2027-01-01")
ROUTINE = {
    "banner": "220 mx ESMTP",
    "response_time_ms": 30.125,
    "address": "192.0.2.1",
    "phases": Phases(dns_ms=1.5, connect_ms=2.25, greeting_ms=3.0),
    "capabilities": ["PIPELINING"],
}


def _result(cc: str, n: int, status: str = "up", **extra: Any) -> dict[str, Any]:
    """Round `n` of `cc` (a minute apart), as an agent sends it; its job id is the round's."""
    return {"cc": cc, "n": n, "status": status, "extra": ROUTINE | extra}


# Batches, each holding a (monitor, country) once: (country index, round, status, fields).
BATCHES: list[list[dict[str, Any]]] = [
    # fresh states: a routine up (stored whole, the state's first full row), a failure
    [_result("A", 0), _result("B", 0, "down", error_kind="refused", message="refused")],
    # the same facts again (compact), a recovery (whole)
    [_result("A", 1), _result("B", 1)],
    # a phase kept to less than a microsecond (whole); the controller's own missed row
    [_result("A", 2, phases=Phases(dns_ms=1.0000001)), {"cc": "B", "n": 2, "missed": True}],
    # compact again; a real result replacing the missed row of its round
    [_result("A", 3), _result("B", 2)],
    # a redelivery (nothing stored); an inconclusive result
    [_result("A", 3), _result("B", 3, "inconclusive", error_kind="inconclusive")],
    # a down of a missed kind (stored missed); new facts with a certificate, a new agent
    [
        _result("A", 4, "down", error_kind="expired", message="expired"),
        _result("B", 4, tls=TLS, agent_id="agent-new"),
    ],
    # started off the millisecond (whole); the certificate's facts again (compact)
    [_result("A", 5, started_ms=5.5), _result("B", 5, tls=TLS, agent_id="agent-new")],
    # a phase past the five a compact row keeps (whole); a failure after successes
    [
        _result("A", 6, phases=Phases(dns_ms=1.0, submit_ms=2.0)),
        _result("B", 6, "down", error_kind="timeout", message="timed out"),
    ],
]


def _rows(
    batch: list[dict[str, Any]], public_id: str, countries: list[str], t0: datetime
) -> list[CheckedResult | ResultRow]:
    rows: list[CheckedResult | ResultRow] = []
    for r in batch:
        cc = countries["AB".index(r["cc"])]
        at = t0 + timedelta(minutes=r["n"])
        job = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{r['cc']}{r['n']}"))
        if r.get("missed"):
            rows.append(
                ResultRow.missed(uuid.UUID(public_id), "smtp", cc, job, at, "no_agent", "none")
            )
            continue
        extra = dict(r["extra"])
        started = at + timedelta(milliseconds=extra.pop("started_ms", 5))
        sent = CheckResult(
            job_id=job,
            monitor_id=public_id,
            monitor_type="smtp",
            country=cc,
            agent_id=extra.pop("agent_id", f"agent-{cc}"),
            scheduled_at=iso_ms(at),
            started_at=started.isoformat().replace("+00:00", "Z"),
            finished_at=iso_ms(at + timedelta(milliseconds=40)),
            status=r["status"],
            error_kind=extra.pop("error_kind", None),
            message=extra.pop("message", "250 ok"),
            **extra,
        )
        rows.append(results.decode_result(encode(sent)))
    return rows


@contextlib.contextmanager
def _general() -> Iterator[None]:
    """Every batch takes the general statement for the while."""
    kept = dict(results._STATEMENTS)
    results._STATEMENTS[True, False] = results._INSERT
    results._STATEMENTS[True, True] = results._INSERT_OLD
    try:
        yield
    finally:
        results._STATEMENTS.update(kept)


# What each table holds of a monitor, its own id left out (and the facts' hash, which hashes
# the monitor's public id too, mapped back).
_TABLES = {
    "result_rows": "SELECT * FROM result_rows WHERE monitor_id = $1"
    " ORDER BY scheduled_at, country, tag",
    # a replaced row's details are stamped with the clock, not the transaction's time
    "result_details": "SELECT d.*, CASE WHEN r.status & 8 = 0 THEN d.stored_at END AS at"
    " FROM result_details d JOIN result_rows r USING (monitor_id, scheduled_at, country, tag)"
    " WHERE d.monitor_id = $1 ORDER BY scheduled_at, country, tag",
    "result_rollups": "SELECT * FROM result_rollups WHERE monitor_id = $1 ORDER BY hour, country",
    "monitor_country_state": "SELECT * FROM monitor_country_state WHERE monitor_id = $1"
    " ORDER BY country",
    "alert_queue": "SELECT * FROM alert_queue WHERE monitor_id = $1",
}
_OWN = {"monitor_id", "monitor_public_id", "stored_at"}


async def _held(conn: Conn, monitor_id: int, facts: dict[Any, Any]) -> Any:
    held = {}
    for table, sql in _TABLES.items():
        held[table] = [
            {
                k: facts.get(v, v) if k == "detail_facts" else v
                for k, v in r.items()
                if k not in _OWN
            }
            for r in await conn.fetch(sql, monitor_id)
        ]
    return held


async def test_one_row_forms_store_what_the_general_statement_stores(
    api: httpx.AsyncClient, org: Tenant, pipe_pool: asyncpg.Pool, countries: Countries
) -> None:
    ccs = countries.take(2)
    once, general = (await create(api, org), await create(api, org))
    t0 = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=10)
    facts: dict[Any, Any] = {}
    stored = []
    async with pipe_pool.acquire() as conn:
        ids = [
            await conn.fetchval("SELECT id FROM monitors WHERE public_id = $1::uuid", m["publicId"])
            for m in (once, general)
        ]
        # the same queue rows to start from (made as each monitor was)
        await conn.execute(
            "UPDATE alert_queue SET due_at = now() WHERE monitor_id = ANY($1::bigint[])", ids
        )
        for n, batch in enumerate(BATCHES):
            async with conn.transaction():
                mine = _rows(batch, once["publicId"], ccs, t0)
                theirs = _rows(batch, general["publicId"], ccs, t0)
                assert len({(r.monitor_id, r.country) for r in mine}) == len(mine)
                # both at one writer's clock, as both were at one transaction's now()
                now = utcnow()
                got = await results.store(conn, mine, now=now)
                with _general():
                    stored.append((got, await results.store(conn, theirs, now=now)))
                facts |= {
                    uuid.UUID(results.facts_of(a)): uuid.UUID(results.facts_of(b))
                    for a, b in zip(mine, theirs, strict=True)
                }
            mine_held, theirs_held = await _held(conn, ids[0], facts), await _held(conn, ids[1], {})
            for table in _TABLES:
                assert mine_held[table] == theirs_held[table], (n, table)
        prepared = await conn.fetchval(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", results._ONCE
        )
    assert prepared == 1  # the one-row forms did store the first monitor's batches
    assert [a for a, _ in stored] == [b for _, b in stored] == [2, 2, 2, 2, 1, 2, 2, 2]
    # the table covers what it is for
    rows = theirs_held["result_rows"]
    assert {r["status"] & 7 for r in rows} == {0, 1, 2, 3}
    assert any(r["status"] & 8 for r in rows) and any(r["detail_ms"] is not None for r in rows)
    assert sum(r["detail_ms"] is None for r in rows) > 4
    assert any(d["tls"] is not None for d in theirs_held["result_details"])
