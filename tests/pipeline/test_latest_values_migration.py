"""Migration 0037 fills each country's latest values (response time, phases, certificate
expiry) from the results stored before it: the same values the ingester writes from then on,
for a full row, a compact one, a packed one, an `expired` row, a replaced one and a round whose
rows are gone."""

import uuid
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
import msgspec

from controller.db.migrate import migrate
from controller.db.pool import connect
from controller.ingest import packer
from controller.ingest import store as results
from controller.ingest.store import CheckedResult
from controller.jobs.result_kinds import ResultRow
from controller.jobs.rules import JobIds
from shared.timefmt import iso_ms, utcnow
from tests.conftest import scratch_database

LATEST = "0037_latest_values"
COLUMNS = "last_response_time_ms, last_phases_ms, last_cert_not_after"


def _result(
    public_id: str, country: str, at: datetime, job: str | None = None, **fields: Any
) -> CheckedResult:
    wire = {
        "jobId": job or str(uuid.uuid4()),
        "monitorId": public_id,
        "monitorType": "smtp",
        "country": country,
        "agentId": f"{country}-1",
        "scheduledAt": iso_ms(at),
        "startedAt": iso_ms(at),
        "finishedAt": iso_ms(at + timedelta(milliseconds=40)),
        "status": "up",
        "message": "",
        "responseTimeMs": 12.5,
        "phases": {"dnsMs": 1.5, "connectMs": 2.25, "greetingMs": 8.0},
        "tls": {"version": "TLSv1.3", "certNotAfter": "2031-05-04T03:02:01Z"},
        **fields,
    }
    return msgspec.convert(wire, CheckedResult)


async def test_the_backfill_gives_what_the_ingester_writes(database_url: str) -> None:
    async with scratch_database(database_url, "mailprobe_0037") as url:
        conn = await connect(url)
        try:
            await _check(conn)
        finally:
            await conn.close()


async def _check(conn: asyncpg.Connection) -> None:
    org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('o') RETURNING id")
    customer = await conn.fetchval(
        "INSERT INTO customers (organization_id, name) VALUES ($1, 'c') RETURNING id", org
    )
    monitor = cast(
        asyncpg.Record,
        await conn.fetchrow(
            "INSERT INTO monitors (organization_id, customer_id, type, name, hostname, port,"
            " status, check_interval, timeout_seconds, config)"
            " VALUES ($1, $2, 'smtp', 'm', 'mx.example.com', 25, 'active', 60, 30, '{}')"
            " RETURNING id, public_id::text",
            org,
            customer,
        ),
    )
    pid = monitor["public_id"]
    now = utcnow().replace(second=0, microsecond=0)
    packed_hour = now.replace(minute=0) - timedelta(hours=3)
    expired_job = str(uuid.uuid4())
    batches: list[list[CheckedResult | ResultRow]] = [
        # DE: a full row, then two compact ones (the same facts): the last one is the latest
        [_result(pid, "DE", now - timedelta(minutes=m), responseTimeMs=10.0 + m) for m in (3,)],
        [_result(pid, "DE", now - timedelta(minutes=m), responseTimeMs=10.0 + m) for m in (2, 1)],
        # US: a full row with the phases a round trip has
        [
            _result(
                pid,
                "US",
                now - timedelta(minutes=1),
                phases={"dnsMs": 0.001, "submitMs": 120.0, "deliveryMs": 2500.5, "fetchMs": 40.0},
                tls=None,
            )
        ],
        # SG: the alerter's `expired` row for the latest round
        [
            _result(pid, "SG", now - timedelta(minutes=2)),
            ResultRow.missed(
                uuid.UUID(pid),
                "smtp",
                "SG",
                expired_job,
                now - timedelta(minutes=1),
                "expired",
                "no result by then",
            ),
        ],
        # GB: an `expired` row replaced by the round's real result
        [
            ResultRow.missed(
                uuid.UUID(pid),
                "smtp",
                "GB",
                expired_job.replace(expired_job[:8], "0" * 8),
                now - timedelta(minutes=1),
                "expired",
                "no result by then",
            )
        ],
        [
            _result(
                pid,
                "GB",
                now - timedelta(minutes=1),
                job=expired_job.replace(expired_job[:8], "0" * 8),
                responseTimeMs=99.0,
            )
        ],
        # JP: results of an hour since packed
        [_result(pid, "JP", packed_hour + timedelta(minutes=m), responseTimeMs=m) for m in (5, 6)],
        # FR: a round whose rows are deleted below (past their retention)
        [_result(pid, "FR", now - timedelta(minutes=1))],
    ]
    await results.ensure_partitions(conn, packed_hour - timedelta(days=1))
    for batch in batches:
        async with conn.transaction():
            assert await results.store(conn, batch, now=utcnow())
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", packer.PACK_LOCK)
        ids = JobIds([b"k" * 32])
        assert await packer.pack(conn, ids, packed_hour, packed_hour + timedelta(hours=1)) == 1
    await conn.execute(
        "DELETE FROM result_rows WHERE country = result_country_code('FR');"
        "DELETE FROM result_details WHERE country = result_country_code('FR')"
    )
    read = f"SELECT country, {COLUMNS} FROM monitor_country_state ORDER BY country"
    written = {r["country"]: dict(r) for r in await conn.fetch(read)}
    # what the ingester wrote
    assert written["DE"] == {
        "country": "DE",
        "last_response_time_ms": 11.0,
        "last_phases_ms": [1.5, 2.25, None, 8.0, None, None, None, None],
        "last_cert_not_after": "2031-05-04T03:02:01Z",
    }
    assert written["US"]["last_phases_ms"] == [0.001, None, None, None, None, 120.0, 2500.5, 40.0]
    assert written["US"]["last_cert_not_after"] is None
    assert written["SG"] == {
        "country": "SG",
        "last_response_time_ms": None,
        "last_phases_ms": None,
        "last_cert_not_after": None,
    }
    assert written["GB"]["last_response_time_ms"] == 99.0
    assert written["JP"]["last_response_time_ms"] == 6.0

    # back to before 0037, then migrated again: the backfill reads the stored results
    await conn.execute(
        "ALTER TABLE monitor_country_state DROP COLUMN last_response_time_ms,"
        " DROP COLUMN last_phases_ms, DROP COLUMN last_cert_not_after;"
        " DROP FUNCTION result_phases_ms(jsonb); DROP FUNCTION result_phase_value(jsonb);"
        " DROP FUNCTION result_compact_phases_ms(integer, integer, integer, integer, integer)"
    )
    await conn.execute("DELETE FROM schema_migrations WHERE version = $1", LATEST)
    assert await migrate(conn) == [LATEST]
    filled = {r["country"]: dict(r) for r in await conn.fetch(read)}
    # FR's rows are gone: nothing to fill from
    assert filled.pop("FR") == {
        "country": "FR",
        "last_response_time_ms": None,
        "last_phases_ms": None,
        "last_cert_not_after": None,
    }
    assert written.pop("FR")["last_response_time_ms"] == 12.5
    assert filled == written
